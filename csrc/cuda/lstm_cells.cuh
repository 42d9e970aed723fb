// The LSTM cell policy of the recurrent kernels (recurrence.cuh): what one (step, batch row,
// hidden unit) reads and writes around the shared gate math (csrc/cell/lstm.h), which runs in
// the compute type (numeric.cuh).
#pragma once

#include <cstdint>

#include "cell/lstm.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/numeric.cuh"
#include "cuda/recurrence.cuh"

namespace fastgates::FG_CUDA_NAMESPACE {

struct LstmCell {
  static constexpr int kGates = 4;
  template <typename T> using Forward = cuda::LstmForward<T>;
  template <typename T> using Backward = cuda::LstmBackward<T>;

  // recurrent[g]: row g·H + j of W_hh times h_{t-1} of row b of the step.
  template <typename T, typename Acc>
  __device__ static __forceinline__ void forward_cell(const Forward<T>& a, const StepRows& step, int64_t b, int64_t j,
                                                      const Acc* recurrent) {
    using N = Numeric<T>;
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step.offset + b;
    const int64_t state = b * H + j;
    const T* x = a.gates_x + row * 4 * H + j;
    const cell::LstmGates<Acc> pre{N::load(x[0]) + recurrent[0], N::load(x[H]) + recurrent[1],
                                   N::load(x[2 * H]) + recurrent[2], N::load(x[3 * H]) + recurrent[3]};
    // The running c of sequence b, in the compute type; each (b, j) is always updated by the
    // same thread.
    Acc* c_state = running_state<Acc>(a.workspace) + state;
    const Acc c_prev = b < step.continued ? *c_state : N::load(a.c0[state]);
    Acc c, h;
    const cell::LstmGates<Acc> act = cell::lstm_forward(pre, c_prev, &c, &h);
    *c_state = c;
    a.y[row * H + j] = N::store(h);
    if (a.saved_gates != nullptr) {
      T* s = a.saved_gates + row * 4 * H + j;
      s[0] = N::store(act.i);
      s[H] = N::store(act.f);
      s[2 * H] = N::store(act.g);
      s[3 * H] = N::store(act.o);
      a.saved_c[row * H + j] = N::store(c);
    }
    if (b >= step.carried) {  // sequence b ends at this step
      a.h_n[state] = N::store(h);
      a.c_n[state] = N::store(c);
    }
  }

  // The gradient whose product with W_hh flows back into h_{t-1}: dgates, [N, 4H].
  template <typename T>
  __device__ static __forceinline__ const T* recurrent_gradient(const Backward<T>& a) {
    return a.dgates;
  }

  // recurrent: (dgates of the step after W_hh)[b, j], 0 where sequence b ends at this step.
  template <typename T, typename Acc>
  __device__ static __forceinline__ void backward_cell(const Backward<T>& a, const StepRows& step, int64_t b, int64_t j,
                                                       Acc recurrent) {
    using N = Numeric<T>;
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step.offset + b;
    const int64_t state = b * H + j;
    const bool ends = b >= step.carried, starts = b >= step.continued;
    const Acc dh = N::load(a.dy[row * H + j]) + (ends ? N::load(a.dh_n[state]) : Acc(0)) + recurrent;
    // The running dc of sequence b (as c forward).
    Acc* dc_state = running_state<Acc>(a.workspace) + state;
    const Acc dc = ends ? N::load(a.dc_n[state]) : *dc_state;
    const T* s = a.saved_gates + row * 4 * H + j;
    const cell::LstmGates<Acc> act{N::load(s[0]), N::load(s[H]), N::load(s[2 * H]), N::load(s[3 * H])};
    const Acc c_prev = N::load(starts ? a.c0[state] : a.saved_c[(step.before + b) * H + j]);
    Acc dc_prev;
    const cell::LstmGates<Acc> d =
        cell::lstm_backward(act, N::load(a.saved_c[row * H + j]), c_prev, dh, dc, &dc_prev);
    T* out = a.dgates + row * 4 * H + j;
    out[0] = N::store(d.i);
    out[H] = N::store(d.f);
    out[2 * H] = N::store(d.g);
    out[3 * H] = N::store(d.o);
    *dc_state = dc_prev;
    if (starts) a.dc0[state] = N::store(dc_prev);
  }

  // Sequence b started at the step visited last: recurrent = (its dgates W_hh)[b, j].
  template <typename T, typename Acc>
  __device__ static __forceinline__ void finish_backward(const Backward<T>& a, int64_t b, int64_t j, Acc recurrent) {
    a.dh0[b * a.shape.hidden_size + j] = Numeric<T>::store(recurrent);
  }
};

}  // namespace fastgates::FG_CUDA_NAMESPACE
