// The GRU cell policy of the recurrent kernels (recurrence.cuh): what one (step, batch row,
// hidden unit) reads and writes around the shared gate math (csrc/cell/gru.h).
#pragma once

#include <cstdint>

#include "cell/gru.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/recurrence.cuh"

namespace fastgates::FG_CUDA_NAMESPACE {

struct GruCell {
  static constexpr int kGates = 3;
  template <typename T> using Forward = cuda::GruForward<T>;
  template <typename T> using Backward = cuda::GruBackward<T>;

  // recurrent[g]: row g·H + j of W_hh times h_{t-1} of batch row b.
  template <typename T>
  __device__ static __forceinline__ void forward_cell(const Forward<T>& a, int64_t t, int64_t b, int64_t j,
                                                      const T* recurrent) {
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step_row(a.shape, t) + b;
    const int64_t state = b * H + j;
    const T* x = a.gates_x + row * 3 * H + j;
    const T* bias = a.b_hh;
    const cell::GruGates<T> input{x[0], x[H], x[2 * H]};
    const cell::GruGates<T> hidden{recurrent[0] + (bias ? bias[j] : T(0)), recurrent[1] + (bias ? bias[H + j] : T(0)),
                                   recurrent[2] + (bias ? bias[2 * H + j] : T(0))};
    const T h_prev = t == 0 ? a.h0[state] : a.y[(step_row(a.shape, t - 1) + b) * H + j];
    T h;
    const cell::GruSaved<T> s = cell::gru_forward(input, hidden, h_prev, &h);
    a.y[row * H + j] = h;
    if (a.saved != nullptr) {
      T* out = a.saved + row * 4 * H + j;
      out[0] = s.r;
      out[H] = s.z;
      out[2 * H] = s.n;
      out[3 * H] = s.h_n;
    }
    if (t == a.shape.steps - 1) a.h_n[state] = h;
  }

  // The gradient whose product with W_hh flows back into h_{t-1}: dgates_h, [T, B, 3H].
  template <typename T>
  __device__ static __forceinline__ const T* recurrent_gradient(const Backward<T>& a) {
    return a.dgates_h;
  }

  // recurrent: (dgates_h_{t+1} W_hh)[b, j], 0 at the last step.
  template <typename T>
  __device__ static __forceinline__ void backward_cell(const Backward<T>& a, int64_t t, int64_t b, int64_t j,
                                                       T recurrent) {
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step_row(a.shape, t) + b;
    const int64_t state = b * H + j;
    // dh0 carries z·dh (the part of dh_t that bypasses W_hh) from step t+1 (same thread for
    // each (b, j)).
    const T dh = a.dy[row * H + j] + (t == a.shape.steps - 1 ? a.dh_n[state] : a.dh0[state]) + recurrent;
    const T* s = a.saved + row * 4 * H + j;
    const cell::GruSaved<T> saved{s[0], s[H], s[2 * H], s[3 * H]};
    const T h_prev = t == 0 ? a.h0[state] : a.y[(step_row(a.shape, t - 1) + b) * H + j];
    cell::GruGates<T> dx, dh_part;
    a.dh0[state] = cell::gru_backward(saved, h_prev, dh, &dx, &dh_part);
    T* out_x = a.dgates_x + row * 3 * H + j;
    T* out_h = a.dgates_h + row * 3 * H + j;
    out_x[0] = dx.r;
    out_x[H] = dx.z;
    out_x[2 * H] = dx.n;
    out_h[0] = dh_part.r;
    out_h[H] = dh_part.z;
    out_h[2 * H] = dh_part.n;
  }

  // After step 0: dh0 = z·dh (left there by step 0) + (dgates_h_0 W_hh)[b, j].
  template <typename T>
  __device__ static __forceinline__ void finish_backward(const Backward<T>& a, int64_t b, int64_t j, T recurrent) {
    const int64_t state = b * a.shape.hidden_size + j;
    a.dh0[state] = a.dh0[state] + recurrent;
  }
};

}  // namespace fastgates::FG_CUDA_NAMESPACE
