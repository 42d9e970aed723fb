// The LSTM cell policy of the recurrent kernels (recurrence.cuh): what one (step, batch row,
// hidden unit) reads and writes around the shared gate math (csrc/cell/lstm.h), which runs in
// the compute type (numeric.cuh). Projected: the LSTM with a projection (kernels.h), whose
// steps have a second phase (forward_projection, backward_projection).
#pragma once

#include <cstdint>

#include "cell/lstm.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/numeric.cuh"
#include "cuda/recurrence.cuh"

namespace fastgates::FG_CUDA_NAMESPACE {

template <bool Projected>
struct LstmCellOf {
  static constexpr int kGates = 4;
  static constexpr bool kProjected = Projected;
  template <typename T> using Forward = cuda::LstmForward<T>;
  template <typename T> using Backward = cuda::LstmBackward<T>;

  // recurrent[g]: row g·H + j of W_hh times h_{t-1} of row b of the step. Writes h_t (or m_t,
  // the projection's input, when projected) and c_t.
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
    const bool ends = b >= step.carried;  // sequence b ends at this step
    if constexpr (Projected) {
      a.saved_m[row * H + j] = N::store(h);
    } else {
      a.y[row * H + j] = N::store(h);
      if (ends) a.h_n[state] = N::store(h);
    }
    if (a.saved_gates != nullptr) {
      T* s = a.saved_gates + row * 4 * H + j;
      s[0] = N::store(act.i);
      s[H] = N::store(act.f);
      s[2 * H] = N::store(act.g);
      s[3 * H] = N::store(act.o);
      a.saved_c[row * H + j] = N::store(c);
    }
    if (ends) a.c_n[state] = N::store(c);
  }

  // Projected, phase B: h_t = m_t W_hrᵀ, for output p of the block's units.
  template <typename T>
  __device__ static __forceinline__ void forward_projection(const Forward<T>& a, const StepRows& step, Tiling tiling,
                                                            typename Numeric<T>::Acc* partials) {
    using Acc = typename Numeric<T>::Acc;
    const int64_t H = a.shape.hidden_size, P = a.shape.proj_size;
    const T* w_hr = a.w_hr;
    const T* m = a.saved_m + step.offset * H;
    projection_step<LstmCellOf, T>(
        step.rows, P, H, tiling, [w_hr, H](int64_t p, int64_t j) { return w_hr[p * H + j]; },
        [m, H](int64_t b) { return m + b * H; },
        [&a, &step, P](int64_t b, int64_t p, Acc h) {
          a.y[(step.offset + b) * P + p] = Numeric<T>::store(h);
          if (b >= step.carried) a.h_n[b * P + p] = Numeric<T>::store(h);
        },
        partials);
  }

  // The gradient whose product with W_hh flows back into h_{t-1}: dgates, [N, 4H].
  template <typename T>
  __device__ static __forceinline__ const T* recurrent_gradient(const Backward<T>& a) {
    return a.dgates;
  }

  // recurrent: (dgates of the step after W_hh)[b, j], 0 where sequence b ends at this step.
  // Projected (phase A, j < P): dL/dh_t into dh; phase B takes it from there.
  template <typename T, typename Acc>
  __device__ static __forceinline__ void backward_cell(const Backward<T>& a, const StepRows& step, int64_t b, int64_t j,
                                                       Acc recurrent) {
    using N = Numeric<T>;
    const int64_t K = state_width(a.shape);
    const int64_t row = step.offset + b;
    const bool ends = b >= step.carried;
    const Acc dh = N::load(dy_row(a, row, K)[j]) + (ends ? N::load(a.dh_n[b * K + j]) : Acc(0)) + recurrent;
    if constexpr (Projected) {
      a.dh[row * K + j] = N::store(dh);
    } else {
      cell_backward(a, step, b, j, dh);
    }
  }

  // Projected, phase B: dL/dm_t = dL/dh_t W_hr, then the cell's backward.
  template <typename T>
  __device__ static __forceinline__ void backward_projection(const Backward<T>& a, const StepRows& step,
                                                             Tiling tiling, typename Numeric<T>::Acc* partials) {
    using Acc = typename Numeric<T>::Acc;
    const int64_t H = a.shape.hidden_size, P = a.shape.proj_size;
    const T* w_hr = a.w_hr;
    const T* dh = a.dh + step.offset * P;
    projection_step<LstmCellOf, T>(
        step.rows, H, P, tiling, [w_hr, H](int64_t j, int64_t p) { return w_hr[p * H + j]; },
        [dh, P](int64_t b) { return dh + b * P; },
        [&a, &step](int64_t b, int64_t j, Acc dm) { cell_backward(a, step, b, j, dm); }, partials);
  }

  // Sequence b started at the step visited last: recurrent = (its dgates W_hh)[b, j].
  template <typename T, typename Acc>
  __device__ static __forceinline__ void finish_backward(const Backward<T>& a, int64_t b, int64_t j, Acc recurrent) {
    a.dh0[b * state_width(a.shape) + j] = Numeric<T>::store(recurrent);
  }

 private:
  // The cell's backward for unit j of row b, given dL/dh_t (or dL/dm_t when projected).
  template <typename T, typename Acc>
  __device__ static __forceinline__ void cell_backward(const Backward<T>& a, const StepRows& step, int64_t b,
                                                       int64_t j, Acc dh) {
    using N = Numeric<T>;
    const int64_t H = a.shape.hidden_size;
    const int64_t row = step.offset + b;
    const int64_t state = b * H + j;
    const bool ends = b >= step.carried, starts = b >= step.continued;
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
    if (starts && a.dc0 != nullptr) a.dc0[state] = N::store(dc_prev);
  }
};

using LstmCell = LstmCellOf<false>;
using ProjectedLstmCell = LstmCellOf<true>;

}  // namespace fastgates::FG_CUDA_NAMESPACE
