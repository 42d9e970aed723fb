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
                             const T (*rec)[kGates][L]) {
    if (a.saved) {
      step_rows<R, true>(t, row0, h_prev, j0, units, rec);
    } else {
      step_rows<R, false>(t, row0, h_prev, j0, units, rec);
    }
  }

  template <int R, bool kSave>
  FG_GATE_MATH void step_rows(int64_t t, int64_t row0, const T* h_prev_all, int64_t j0, int units,
                              const T (*rec)[kGates][L]) {
    const int64_t H = shape.hidden_size;
    const int64_t carried = steps->carried(t);
    const int64_t n0 = steps->offset(t) + row0;  // row of the [N, ...] arrays
    const int64_t gates_stride = a.input.row_stride(3 * H);
    const T* gx = a.input.gates_x + steps->gates_row(t, row0) * gates_stride + j0;
    using V = Lanes<T, R>;
    auto input = [&](int g) { return load_rows<R, T>(strided_rows(gx + g * H, gates_stride), units); };
    // Every row adds the same b_hh.
    auto recurrent = [&](int g) {
      const V product = load_rows<R, T>([&](int r) { return rec[r][g]; }, L);
      return a.b_hh ? product + load_rows<R, T>([&](int) { return a.b_hh + g * H + j0; }, units) : product + V(T(0));
    };
    cell::GruGates<V> x{input(0), input(1), input(2)};
    cell::GruGates<V> hh{recurrent(0), recurrent(1), recurrent(2)};
    const V h_prev = load_rows<R, T>(strided_rows(h_prev_all + row0 * H + j0, H), units);
    V h;
    cell::GruSaved<V> saved_gates = cell::gru_forward(x, hh, h_prev, &h);
    store_rows<R>(strided_rows(a.y + n0 * H + j0, H), h, units);
    if constexpr (kSave) {
      T* saved = a.saved + n0 * 4 * H + j0;
      store_rows<R>(strided_rows(saved, 4 * H), saved_gates.r, units);
      store_rows<R>(strided_rows(saved + H, 4 * H), saved_gates.z, units);
      store_rows<R>(strided_rows(saved + 2 * H, 4 * H), saved_gates.n, units);
      store_rows<R>(strided_rows(saved + 3 * H, 4 * H), saved_gates.h_n, units);
    }
    // Rows at or past `carried` end at step t.
    T* h_n = a.h_n + row0 * H + j0;
    store_rows<R>([&](int r) { return row0 + r >= carried ? h_n + r * H : nullptr; }, h, units);
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
  ColumnSums<T, 4> db_sums;  // of d r, d z, d n (b_ih's) and r ⊙ d n (b_hn's)

  explicit GruBackwardCell(const GruBackward<T>& args) : a(args), shape(args.shape), w_hh(args.w_hh) {}

  void attach(WorkspaceCarver& w, const StepSchedule* schedule) {
    steps = schedule;
    dh_direct = w.take<T>(shape.batch * shape.hidden_size);
    db_sums.attach(w, shape.hidden_size);
  }

  void zero_sums(int64_t j0) { db_sums.zero(j0); }
  void write_sums(int64_t j0, int units) {
    const int64_t H = shape.hidden_size;
    for (int g = 0; g < 3; ++g) {
      if (a.db_ih) db_sums.write(g, j0, units, a.db_ih + g * H + j0);
      // d r and d z are the same for both biases; the n gate's differ (r ⊙ d n for b_hn).
      if (a.db_hh) db_sums.write(g == 2 ? 3 : g, j0, units, a.db_hh + g * H + j0);
    }
  }

  const T* recurrent_gradient(int64_t t) const { return a.dgates_h + steps->offset(t) * 3 * shape.hidden_size; }

  template <int R>
  FG_ALWAYS_INLINE void step(int64_t t, int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    with_units<T>(units, [&](auto block_units) { step_block<R>(t, row0, j0, block_units, rec); });
  }

  // Units: int, or std::integral_constant<int, L> for a full block (with_units).
  template <int R, class Units>
  FG_GATE_MATH void step_block(int64_t t, int64_t row0, int64_t j0, Units units, const T (*rec)[L]) {
    const int64_t H = shape.hidden_size;
    const int64_t carried = steps->carried(t);
    const int64_t continued = steps->continued(t);
    const T* h_before = continued > 0 ? a.y + steps->offset(steps->before(t)) * H : nullptr;
    const int64_t n0 = steps->offset(t) + row0;
    using V = Lanes<T, R>;
    const T* saved = a.saved + n0 * 4 * H + j0;
    auto saved_gate = [&](int g) { return load_rows<R, T>(strided_rows(saved + g * H, 4 * H), units); };
    cell::GruSaved<V> s{saved_gate(0), saved_gate(1), saved_gate(2), saved_gate(3)};
    const V dy = load_rows<R, T>(strided_rows(a.dy + n0 * a.dy_stride(H) + j0, a.dy_stride(H)), units);
    // dL/dh_t = dy + later: for rows at or past `carried`, which end at step t, later = dh_n;
    // for the others, the gradient from step t+1 through W_hh (rec) plus the part that
    // bypassed it.
    V later;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      later.v[r] = row >= carried ? load_lanes(a.dh_n + row * H + j0, units).v[0]
                                  : (load_lanes(dh_direct + row * H + j0, units) + Lanes<T>::load(rec[r])).v[0];
    }
    const V dh = dy + later;
    const V h_prev =
        load_rows<R, T>([&](int r) { return (row0 + r < continued ? h_before : a.h0) + (row0 + r) * H + j0; }, units);
    cell::GruGates<V> dx, dhp;
    V direct = cell::gru_backward(s, h_prev, dh, &dx, &dhp);
    T* dgates_x = a.dgates_x + n0 * 3 * H + j0;
    T* dgates_h = a.dgates_h + n0 * 3 * H + j0;
    // dgates_x is read only after the kernel (the GEMMs of dx, dW_ih and db): streamed past the
    // cache. dgates_h is the next step's recurrent gradient: stored as usual.
    stream_rows<R>(strided_rows(dgates_x, 3 * H), dx.r, units);
    stream_rows<R>(strided_rows(dgates_x + H, 3 * H), dx.z, units);
    stream_rows<R>(strided_rows(dgates_x + 2 * H, 3 * H), dx.n, units);
    store_rows<R>(strided_rows(dgates_h, 3 * H), dhp.r, units);
    store_rows<R>(strided_rows(dgates_h + H, 3 * H), dhp.z, units);
    store_rows<R>(strided_rows(dgates_h + 2 * H, 3 * H), dhp.n, units);
    store_rows<R>(strided_rows(dh_direct + row0 * H + j0, H), direct, units);
    if (a.db_ih || a.db_hh) {
      db_sums.add(0, j0, dx.r);
      db_sums.add(1, j0, dx.z);
      db_sums.add(2, j0, dx.n);
      db_sums.add(3, j0, dhp.n);
    }
  }

  bool wants_dh0() const { return a.dh0 != nullptr; }

  template <int R>
  FG_ALWAYS_INLINE void initial(int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = shape.hidden_size;
    if (!rec) return;  // dL/dh0 not wanted
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const T* direct = dh_direct + row * H + j0;
      T* dh0 = a.dh0 + row * H + j0;
      for (int l = 0; l < units; ++l) dh0[l] = direct[l] + rec[r][l];
    }
  }
};

}  // namespace fastgates::cpu::FG_CPU_ISA
