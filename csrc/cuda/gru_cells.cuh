// The GRU cell policy of the recurrent kernels (recurrence.cuh): what one (step, batch row,
// hidden unit) reads and writes around the shared gate math (csrc/cell/gru.h), which runs in
// the compute type (numeric.cuh).
#pragma once

#include <cstdint>

#include "cell/gru.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/numeric.cuh"
#include "cuda/recurrence.cuh"

namespace fastgates::FG_CUDA_NAMESPACE {

struct GruCell {
  static constexpr int kGates = 3;
  static constexpr bool kProjected = false;
  template <typename T> using Forward = cuda::GruForward<T>;
  template <typename T> using Backward = cuda::GruBackward<T>;

  // recurrent[g]: row g·H + j of W_hh times h_{t-1} of row b of the step.
  template <typename T, typename Acc>
  __device__ static __forceinline__ void forward_cell(const Forward<T>& a, const StepRows& step, int64_t b, int64_t j,
                                                      const Acc* recurrent) {
    using N = Numeric<T>;
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step.offset + b;
    const int64_t state = b * H + j;
    const T* x = a.gates_x + row * 3 * H + j;
    const T* bias = a.b_hh;
    const cell::GruGates<Acc> input{N::load(x[0]), N::load(x[H]), N::load(x[2 * H])};
    const cell::GruGates<Acc> hidden{recurrent[0] + (bias ? N::load(bias[j]) : Acc(0)),
                                     recurrent[1] + (bias ? N::load(bias[H + j]) : Acc(0)),
                                     recurrent[2] + (bias ? N::load(bias[2 * H + j]) : Acc(0))};
    // h_{t-1} as stored (the recurrent product read it the same way).
    const Acc h_prev = N::load(previous_h(a, step, b)[j]);
    Acc h;
    const cell::GruSaved<Acc> s = cell::gru_forward(input, hidden, h_prev, &h);
    a.y[row * H + j] = N::store(h);
    if (a.saved != nullptr) {
      T* out = a.saved + row * 4 * H + j;
      out[0] = N::store(s.r);
      out[H] = N::store(s.z);
      out[2 * H] = N::store(s.n);
      out[3 * H] = N::store(s.h_n);
    }
    if (b >= step.carried) a.h_n[state] = N::store(h);  // sequence b ends at this step
  }

  // The gradient whose product with W_hh flows back into h_{t-1}: dgates_h, [N, 3H].
  template <typename T>
  __device__ static __forceinline__ const T* recurrent_gradient(const Backward<T>& a) {
    return a.dgates_h;
  }

  // recurrent: (dgates_h of the step after W_hh)[b, j], 0 where sequence b ends at this step.
  template <typename T, typename Acc>
  __device__ static __forceinline__ void backward_cell(const Backward<T>& a, const StepRows& step, int64_t b, int64_t j,
                                                       Acc recurrent) {
    using N = Numeric<T>;
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step.offset + b;
    const int64_t state = b * H + j;
    // The running state: z·dh of the step after, the part of dh_t that bypasses W_hh (same
    // thread for each (b, j)); where sequence b ends, dh_n instead.
    Acc* bypass = running_state<Acc>(a.workspace) + state;
    const Acc dh = N::load(dy_row(a, row, H)[j]) + (b >= step.carried ? N::load(a.dh_n[state]) : *bypass) + recurrent;
    const T* s = a.saved + row * 4 * H + j;
    const cell::GruSaved<Acc> saved{N::load(s[0]), N::load(s[H]), N::load(s[2 * H]), N::load(s[3 * H])};
    const Acc h_prev = N::load(previous_h(a, step, b)[j]);
    cell::GruGates<Acc> dx, dh_part;
    *bypass = cell::gru_backward(saved, h_prev, dh, &dx, &dh_part);
    T* out_x = a.dgates_x + row * 3 * H + j;
    T* out_h = a.dgates_h + row * 3 * H + j;
    out_x[0] = N::store(dx.r);
    out_x[H] = N::store(dx.z);
    out_x[2 * H] = N::store(dx.n);
    out_h[0] = N::store(dh_part.r);
    out_h[H] = N::store(dh_part.z);
    out_h[2 * H] = N::store(dh_part.n);
  }

  // Sequence b started at the step visited last: dh0 = z·dh of that step + (its dgates_h W_hh)[b, j].
  template <typename T, typename Acc>
  __device__ static __forceinline__ void finish_backward(const Backward<T>& a, int64_t b, int64_t j, Acc recurrent) {
    const int64_t state = b * a.shape.hidden_size + j;
    a.dh0[state] = Numeric<T>::store(*(running_state<Acc>(a.workspace) + state) + recurrent);
  }
};

}  // namespace fastgates::FG_CUDA_NAMESPACE
