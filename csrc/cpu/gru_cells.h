// The GRU's part of the CPU time loop (recurrence.h): gate math on one tile of rows × units,
// reading and writing the arrays of GruForward / GruBackward (kernels.h).
#pragma once

#include "cell/gru.h"
#include "cpu/lanes.h"
#include "cpu/recurrence.h"

namespace fastgates::cpu::FG_CPU_ISA {

template <typename T>
struct GruForwardCell {
  using Scalar = T;
  static constexpr int kGates = 3;
  static constexpr bool kProjected = false;
  static constexpr int L = kLanes<T>;

  GruForward<T> a;
  SequenceShape shape;
  const T* w_hh;
  const T* h0;
  const T* y;
  const StepSchedule* steps = nullptr;

  explicit GruForwardCell(const GruForward<T>& args)
      : a(args), shape(args.shape), w_hh(args.w_hh), h0(args.h0), y(args.y) {}

  void attach(WorkspaceCarver&, const StepSchedule* schedule) { steps = schedule; }

  const InputProjection<T>& input() const { return a.input; }

  template <int R>
  FG_ALWAYS_INLINE void step(int64_t t, int64_t row0, const T* h_prev, bool, int64_t j0, int units,
                             const T (&rec)[R][kGates][L]) {
    if (a.saved) {
      step_rows<R, true>(t, row0, h_prev, j0, units, rec);
    } else {
      step_rows<R, false>(t, row0, h_prev, j0, units, rec);
    }
  }

  template <int R, bool kSave>
  FG_GATE_MATH void step_rows(int64_t t, int64_t row0, const T* h_prev_all, int64_t j0, int units,
                              const T (&rec)[R][kGates][L]) {
    const int64_t H = shape.hidden_size;
    const int64_t carried = steps->carried(t);
    T bias[3][L] = {};
    if (a.b_hh) {
      for (int g = 0; g < 3; ++g) copy_lanes(bias[g], a.b_hh + g * H + j0, units);
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t n = steps->offset(t) + row;  // row of the [N, ...] arrays
      T gx[3][L] = {}, h_prev[L] = {}, h[L], saved[4][L];
      for (int g = 0; g < 3; ++g) copy_lanes(gx[g], a.input.gates_x + n * 3 * H + g * H + j0, units);
      copy_lanes(h_prev, h_prev_all + row * H + j0, units);
      using V = Lanes<T>;
      cell::GruGates<V> x{V::load(gx[0]), V::load(gx[1]), V::load(gx[2])};
      cell::GruGates<V> hh{V::load(rec[r][0]) + V::load(bias[0]), V::load(rec[r][1]) + V::load(bias[1]),
                           V::load(rec[r][2]) + V::load(bias[2])};
      V h_new;
      cell::GruSaved<V> s = cell::gru_forward(x, hh, V::load(h_prev), &h_new);
      h_new.store(h);
      s.r.store(saved[0]);
      s.z.store(saved[1]);
      s.n.store(saved[2]);
      s.h_n.store(saved[3]);
      copy_lanes(a.y + n * H + j0, h, units);
      if constexpr (kSave) {
        for (int g = 0; g < 4; ++g) copy_lanes(a.saved + n * 4 * H + g * H + j0, saved[g], units);
      }
      if (row >= carried) copy_lanes(a.h_n + row * H + j0, h, units);
    }
  }
};

template <typename T>
struct GruBackwardCell {
  using Scalar = T;
  static constexpr int kGates = 3;
  static constexpr bool kProjected = false;
  static constexpr int L = kLanes<T>;

  GruBackward<T> a;
  SequenceShape shape;
  const T* w_hh;
  const StepSchedule* steps = nullptr;
  T* dh_direct = nullptr;  // [B, H] z·dL/dh_t of the step after, the part that bypasses W_hh

  explicit GruBackwardCell(const GruBackward<T>& args) : a(args), shape(args.shape), w_hh(args.w_hh) {}

  void attach(WorkspaceCarver& w, const StepSchedule* schedule) {
    steps = schedule;
    dh_direct = w.take<T>(shape.batch * shape.hidden_size);
  }

  const T* recurrent_gradient(int64_t t) const { return a.dgates_h + steps->offset(t) * 3 * shape.hidden_size; }

  template <int R>
  FG_GATE_MATH void step(int64_t t, int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = shape.hidden_size;
    const int64_t carried = steps->carried(t);
    const int64_t continued = steps->continued(t);
    const T* h_before = continued > 0 ? a.y + steps->offset(steps->before(t)) * H : nullptr;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t n = steps->offset(t) + row;
      const bool last = row >= carried;
      T saved[4][L] = {}, h_prev[L] = {}, dh[L] = {}, direct[L] = {}, dgx[3][L], dgh[3][L];
      for (int g = 0; g < 4; ++g) copy_lanes(saved[g], a.saved + n * 4 * H + g * H + j0, units);
      copy_lanes(h_prev, (row < continued ? h_before : a.h0) + row * H + j0, units);
      copy_lanes(dh, a.dy + n * H + j0, units);
      if (last) {
        const T* dh_n = a.dh_n + row * H + j0;
        for (int l = 0; l < units; ++l) dh[l] += dh_n[l];
      } else {
        const T* d = dh_direct + row * H + j0;
        for (int l = 0; l < units; ++l) dh[l] += d[l] + rec[r][l];
      }
      using V = Lanes<T>;
      cell::GruSaved<V> s{V::load(saved[0]), V::load(saved[1]), V::load(saved[2]), V::load(saved[3])};
      cell::GruGates<V> dx, dhp;
      V direct_v = cell::gru_backward(s, V::load(h_prev), V::load(dh), &dx, &dhp);
      direct_v.store(direct);
      dx.r.store(dgx[0]);
      dx.z.store(dgx[1]);
      dx.n.store(dgx[2]);
      dhp.r.store(dgh[0]);
      dhp.z.store(dgh[1]);
      dhp.n.store(dgh[2]);
      for (int g = 0; g < 3; ++g) {
        copy_lanes(a.dgates_x + n * 3 * H + g * H + j0, dgx[g], units);
        copy_lanes(a.dgates_h + n * 3 * H + g * H + j0, dgh[g], units);
      }
      copy_lanes(dh_direct + row * H + j0, direct, units);
    }
  }

  template <int R>
  FG_ALWAYS_INLINE void initial(int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = shape.hidden_size;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const T* direct = dh_direct + row * H + j0;
      T* dh0 = a.dh0 + row * H + j0;
      for (int l = 0; l < units; ++l) dh0[l] = direct[l] + rec[r][l];
    }
  }
};

}  // namespace fastgates::cpu::FG_CPU_ISA
