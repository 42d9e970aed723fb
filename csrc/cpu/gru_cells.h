// The GRU's part of the CPU time loop (recurrence.h): gate math on one tile of rows × units,
// reading and writing the arrays of GruForward / GruBackward (kernels.h).
#pragma once

#include "cell/gru.h"
#include "cpu/recurrence.h"

namespace fastgates::cpu::FG_CPU_ISA {

template <typename T>
struct GruForwardCell {
  using Scalar = T;
  static constexpr int kGates = 3;
  static constexpr int L = kLanes<T>;

  GruForward<T> a;
  int64_t steps, batch, hidden_size;
  const T* w_hh;

  explicit GruForwardCell(const GruForward<T>& args)
      : a(args), steps(args.shape.steps), batch(args.shape.batch),
        hidden_size(args.shape.hidden_size), w_hh(args.w_hh) {}

  void attach_state(T*, int64_t) {}

  const T* hidden_before(int64_t t) const { return t == 0 ? a.h0 : a.y + (t - 1) * batch * hidden_size; }

  template <int R>
  FG_ALWAYS_INLINE void step(int64_t t, int64_t row0, int64_t j0, int units, const T (&rec)[R][kGates][L]) {
    if (a.saved) {
      step_rows<R, true>(t, row0, j0, units, rec);
    } else {
      step_rows<R, false>(t, row0, j0, units, rec);
    }
  }

  template <int R, bool kSave>
  FG_ALWAYS_INLINE void step_rows(int64_t t, int64_t row0, int64_t j0, int units, const T (&rec)[R][kGates][L]) {
    const int64_t H = hidden_size;
    const T* b = a.b_hh + j0;
    const T* h_prev_all = hidden_before(t);
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;
      const T* gx = a.gates_x + bt * 3 * H + j0;
      const T* h_prev = h_prev_all + row * H + j0;
      T* h_out = a.y + bt * H + j0;
      T* saved = kSave ? a.saved + bt * 4 * H + j0 : nullptr;
      for (int l = 0; l < units; ++l) {
        cell::GruGates<T> x{gx[l], gx[H + l], gx[2 * H + l]};
        cell::GruGates<T> h{rec[r][0][l] + b[l], rec[r][1][l] + b[H + l], rec[r][2][l] + b[2 * H + l]};
        T h_new;
        cell::GruSaved<T> s = cell::gru_forward(x, h, h_prev[l], &h_new);
        h_out[l] = h_new;
        if constexpr (kSave) {
          saved[l] = s.r;
          saved[H + l] = s.z;
          saved[2 * H + l] = s.n;
          saved[3 * H + l] = s.h_n;
        }
      }
      if (t + 1 == steps) std::memcpy(a.h_n + row * H + j0, h_out, units * sizeof(T));
    }
  }
};

template <typename T>
struct GruBackwardCell {
  using Scalar = T;
  static constexpr int kGates = 3;
  static constexpr int L = kLanes<T>;

  GruBackward<T> a;
  int64_t steps, batch, hidden_size;
  const T* w_hh;
  T* dh_direct = nullptr;  // [B, H] z·dL/dh_t of the step after, the part that bypasses W_hh

  explicit GruBackwardCell(const GruBackward<T>& args)
      : a(args), steps(args.shape.steps), batch(args.shape.batch),
        hidden_size(args.shape.hidden_size), w_hh(args.w_hh) {}

  void attach_state(T* state, int64_t) { dh_direct = state; }

  const T* recurrent_gradient(int64_t t) const { return a.dgates_h + t * batch * 3 * hidden_size; }

  template <int R>
  FG_ALWAYS_INLINE void step(int64_t t, int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = hidden_size;
    const bool last = t + 1 == steps;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;
      const T* saved = a.saved + bt * 4 * H + j0;
      const T* h_prev = (t == 0 ? a.h0 + row * H : a.y + (bt - batch) * H) + j0;
      const T* dy = a.dy + bt * H + j0;
      const T* dh_n = a.dh_n + row * H + j0;
      T* direct = dh_direct + row * H + j0;
      T* dgx = a.dgates_x + bt * 3 * H + j0;
      T* dgh = a.dgates_h + bt * 3 * H + j0;
      for (int l = 0; l < units; ++l) {
        const T dh = dy[l] + (last ? dh_n[l] : direct[l] + rec[r][l]);
        cell::GruSaved<T> s{saved[l], saved[H + l], saved[2 * H + l], saved[3 * H + l]};
        cell::GruGates<T> dx, dhp;
        direct[l] = cell::gru_backward(s, h_prev[l], dh, &dx, &dhp);
        dgx[l] = dx.r;
        dgx[H + l] = dx.z;
        dgx[2 * H + l] = dx.n;
        dgh[l] = dhp.r;
        dgh[H + l] = dhp.z;
        dgh[2 * H + l] = dhp.n;
      }
    }
  }

  template <int R>
  FG_ALWAYS_INLINE void initial(int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = hidden_size;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const T* direct = dh_direct + row * H + j0;
      T* dh0 = a.dh0 + row * H + j0;
      for (int l = 0; l < units; ++l) dh0[l] = direct[l] + rec[r][l];
    }
  }
};

}  // namespace fastgates::cpu::FG_CPU_ISA
