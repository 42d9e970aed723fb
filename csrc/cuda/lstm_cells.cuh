// The LSTM cell policy of the recurrent kernels (recurrence.cuh): what one (step, batch row,
// hidden unit) reads and writes around the shared gate math (csrc/cell/lstm.h).
#pragma once

#include <cstdint>

#include "cell/lstm.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/recurrence.cuh"

namespace fastgates::FG_CUDA_NAMESPACE {

struct LstmCell {
  static constexpr int kGates = 4;
  template <typename T> using Forward = cuda::LstmForward<T>;
  template <typename T> using Backward = cuda::LstmBackward<T>;

  // recurrent[g]: row g·H + j of W_hh times h_{t-1} of batch row b.
  template <typename T>
  __device__ static __forceinline__ void forward_cell(const Forward<T>& a, int64_t t, int64_t b, int64_t j,
                                                      const T* recurrent) {
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step_row(a.shape, t) + b;
    const int64_t state = b * H + j;
    const T* x = a.gates_x + row * 4 * H + j;
    const cell::LstmGates<T> pre{x[0] + recurrent[0], x[H] + recurrent[1], x[2 * H] + recurrent[2],
                                 x[3 * H] + recurrent[3]};
    // c_n carries c from step to step: each (b, j) is always updated by the same thread.
    const T c_prev = t == 0 ? a.c0[state] : a.c_n[state];
    T c, h;
    const cell::LstmGates<T> act = cell::lstm_forward(pre, c_prev, &c, &h);
    a.y[row * H + j] = h;
    a.c_n[state] = c;
    if (a.saved_gates != nullptr) {
      T* s = a.saved_gates + row * 4 * H + j;
      s[0] = act.i;
      s[H] = act.f;
      s[2 * H] = act.g;
      s[3 * H] = act.o;
      a.saved_c[row * H + j] = c;
    }
    if (t == a.shape.steps - 1) a.h_n[state] = h;
  }

  // The gradient whose product with W_hh flows back into h_{t-1}: dgates, [T, B, 4H].
  template <typename T>
  __device__ static __forceinline__ const T* recurrent_gradient(const Backward<T>& a) {
    return a.dgates;
  }

  // recurrent: (dgates_{t+1} W_hh)[b, j], 0 at the last step.
  template <typename T>
  __device__ static __forceinline__ void backward_cell(const Backward<T>& a, int64_t t, int64_t b, int64_t j,
                                                       T recurrent) {
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step_row(a.shape, t) + b;
    const int64_t state = b * H + j;
    const bool last = t == a.shape.steps - 1;
    const T dh = a.dy[row * H + j] + (last ? a.dh_n[state] : T(0)) + recurrent;
    // dc0 carries dc from step to step (same thread for each (b, j), as c_n forward).
    const T dc = last ? a.dc_n[state] : a.dc0[state];
    const T* s = a.saved_gates + row * 4 * H + j;
    const cell::LstmGates<T> act{s[0], s[H], s[2 * H], s[3 * H]};
    const T c_prev = t == 0 ? a.c0[state] : a.saved_c[(step_row(a.shape, t - 1) + b) * H + j];
    T dc_prev;
    const cell::LstmGates<T> d = cell::lstm_backward(act, a.saved_c[row * H + j], c_prev, dh, dc, &dc_prev);
    T* out = a.dgates + row * 4 * H + j;
    out[0] = d.i;
    out[H] = d.f;
    out[2 * H] = d.g;
    out[3 * H] = d.o;
    a.dc0[state] = dc_prev;
  }

  // After step 0: recurrent = (dgates_0 W_hh)[b, j].
  template <typename T>
  __device__ static __forceinline__ void finish_backward(const Backward<T>& a, int64_t b, int64_t j, T recurrent) {
    a.dh0[b * a.shape.hidden_size + j] = recurrent;
  }
};

}  // namespace fastgates::FG_CUDA_NAMESPACE
