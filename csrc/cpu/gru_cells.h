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
      : a(args), shape(args.shape), w_hh(args.w_hh), h0(args.h0), y(args.y) {
    if (!a.input.gates_x) {  // the projection goes into saved (kernels.h)
      a.input.gates_x = a.saved;
      a.input.gates_stride = 4 * shape.hidden_size;
    }
  }

  void attach(WorkspaceCarver&, const StepSchedule* schedule) { steps = schedule; }

  InputProjection<T>& input() { return a.input; }
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
    const int64_t gates_stride = a.input.row_stride(3 * H);
    using V = Lanes<T>;
    V bias[3] = {V(T(0)), V(T(0)), V(T(0))};
    if (a.b_hh) {
      for (int g = 0; g < 3; ++g) bias[g] = load_lanes(a.b_hh + g * H + j0, units);
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t n = steps->offset(t) + row;  // row of the [N, ...] arrays
      const T* gx = a.input.gates_x + steps->gates_row(t, row) * gates_stride + j0;
      cell::GruGates<V> x{load_lanes(gx, units), load_lanes(gx + H, units), load_lanes(gx + 2 * H, units)};
      cell::GruGates<V> hh{V::load(rec[r][0]) + bias[0], V::load(rec[r][1]) + bias[1], V::load(rec[r][2]) + bias[2]};
      V h;
      cell::GruSaved<V> s = cell::gru_forward(x, hh, load_lanes(h_prev_all + row * H + j0, units), &h);
      store_lanes(a.y + n * H + j0, h, units);
      if constexpr (kSave) {
        T* saved = a.saved + n * 4 * H + j0;
        store_lanes(saved, s.r, units);
        store_lanes(saved + H, s.z, units);
        store_lanes(saved + 2 * H, s.n, units);
        store_lanes(saved + 3 * H, s.h_n, units);
      }
      if (row >= carried) store_lanes(a.h_n + row * H + j0, h, units);
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
      using V = Lanes<T>;
      const T* saved = a.saved + n * 4 * H + j0;
      cell::GruSaved<V> s{load_lanes(saved, units), load_lanes(saved + H, units), load_lanes(saved + 2 * H, units),
                          load_lanes(saved + 3 * H, units)};
      const V dy = load_lanes(a.dy + n * H + j0, units);
      const V dh = last ? dy + load_lanes(a.dh_n + row * H + j0, units)
                        : dy + (load_lanes(dh_direct + row * H + j0, units) + V::load(rec[r]));
      cell::GruGates<V> dx, dhp;
      const V h_prev = load_lanes((row < continued ? h_before : a.h0) + row * H + j0, units);
      V direct = cell::gru_backward(s, h_prev, dh, &dx, &dhp);
      T* dgates_x = a.dgates_x + n * 3 * H + j0;
      T* dgates_h = a.dgates_h + n * 3 * H + j0;
      store_lanes(dgates_x, dx.r, units);
      store_lanes(dgates_x + H, dx.z, units);
      store_lanes(dgates_x + 2 * H, dx.n, units);
      store_lanes(dgates_h, dhp.r, units);
      store_lanes(dgates_h + H, dhp.z, units);
      store_lanes(dgates_h + 2 * H, dhp.n, units);
      store_lanes(dh_direct + row * H + j0, direct, units);
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
