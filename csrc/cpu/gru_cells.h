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
  FG_GATE_MATH void step_rows(int64_t t, int64_t row0, int64_t j0, int units, const T (&rec)[R][kGates][L]) {
    const int64_t H = hidden_size;
    const T* h_prev_all = hidden_before(t);
    T bias[3][L] = {};
    for (int g = 0; g < 3; ++g) copy_lanes(bias[g], a.b_hh + g * H + j0, units);
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;
      T gx[3][L] = {}, h_prev[L] = {}, h[L], saved[4][L];
      for (int g = 0; g < 3; ++g) copy_lanes(gx[g], a.gates_x + bt * 3 * H + g * H + j0, units);
      copy_lanes(h_prev, h_prev_all + row * H + j0, units);
      for (int l = 0; l < L; ++l) {
        cell::GruGates<T> x{gx[0][l], gx[1][l], gx[2][l]};
        cell::GruGates<T> hh{rec[r][0][l] + bias[0][l], rec[r][1][l] + bias[1][l], rec[r][2][l] + bias[2][l]};
        cell::GruSaved<T> s = cell::gru_forward(x, hh, h_prev[l], &h[l]);
        saved[0][l] = s.r;
        saved[1][l] = s.z;
        saved[2][l] = s.n;
        saved[3][l] = s.h_n;
      }
      copy_lanes(a.y + bt * H + j0, h, units);
      if constexpr (kSave) {
        for (int g = 0; g < 4; ++g) copy_lanes(a.saved + bt * 4 * H + g * H + j0, saved[g], units);
      }
      if (t + 1 == steps) copy_lanes(a.h_n + row * H + j0, h, units);
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
  FG_GATE_MATH void step(int64_t t, int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = hidden_size;
    const bool last = t + 1 == steps;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;
      T saved[4][L] = {}, h_prev[L] = {}, dh[L] = {}, direct[L] = {}, dgx[3][L], dgh[3][L];
      for (int g = 0; g < 4; ++g) copy_lanes(saved[g], a.saved + bt * 4 * H + g * H + j0, units);
      copy_lanes(h_prev, (t == 0 ? a.h0 + row * H : a.y + (bt - batch) * H) + j0, units);
      copy_lanes(dh, a.dy + bt * H + j0, units);
      if (last) {
        const T* dh_n = a.dh_n + row * H + j0;
        for (int l = 0; l < units; ++l) dh[l] += dh_n[l];
      } else {
        const T* d = dh_direct + row * H + j0;
        for (int l = 0; l < units; ++l) dh[l] += d[l] + rec[r][l];
      }
      for (int l = 0; l < L; ++l) {
        cell::GruSaved<T> s{saved[0][l], saved[1][l], saved[2][l], saved[3][l]};
        cell::GruGates<T> dx, dhp;
        direct[l] = cell::gru_backward(s, h_prev[l], dh[l], &dx, &dhp);
        dgx[0][l] = dx.r;
        dgx[1][l] = dx.z;
        dgx[2][l] = dx.n;
        dgh[0][l] = dhp.r;
        dgh[1][l] = dhp.z;
        dgh[2][l] = dhp.n;
      }
      for (int g = 0; g < 3; ++g) {
        copy_lanes(a.dgates_x + bt * 3 * H + g * H + j0, dgx[g], units);
        copy_lanes(a.dgates_h + bt * 3 * H + g * H + j0, dgh[g], units);
      }
      copy_lanes(dh_direct + row * H + j0, direct, units);
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
