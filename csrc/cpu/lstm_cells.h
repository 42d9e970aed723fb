// The LSTM's part of the CPU time loop (recurrence.h): gate math on one tile of rows × units,
// reading and writing the arrays of LstmForward / LstmBackward (kernels.h). kProjected: the
// LSTM with a projection, h_t = W_hr (o ⊙ tanh c_t).
#pragma once

#include "cell/lstm.h"
#include "cpu/lanes.h"
#include "cpu/recurrence.h"

namespace fastgates::cpu::FG_CPU_ISA {

template <typename T, bool Projected>
struct LstmForwardCell {
  using Scalar = T;
  static constexpr int kGates = 4;
  static constexpr bool kProjected = Projected;
  static constexpr int L = kLanes<T>;

  LstmForward<T> a;
  SequenceShape shape;
  const T* w_hh;
  const T* w_hr;
  const T* h0;
  const T* y;
  const StepSchedule* steps = nullptr;
  T* c_state = nullptr;  // [B, H] c of each row's latest step, in the workspace
  T* m_state = nullptr;  // [B, H] o ⊙ tanh c of the current step (projection only)

  explicit LstmForwardCell(const LstmForward<T>& args)
      : a(args), shape(args.shape), w_hh(args.w_hh), w_hr(args.w_hr), h0(args.h0), y(args.y) {}

  void attach(WorkspaceCarver& w, const StepSchedule* schedule) {
    steps = schedule;
    c_state = w.take<T>(shape.batch * shape.hidden_size);
    if constexpr (kProjected) m_state = w.take<T>(shape.batch * shape.hidden_size);
  }

  InputProjection<T>& input() { return a.input; }
  const InputProjection<T>& input() const { return a.input; }
  const T* projection_input() const { return m_state; }

  template <int R>
  FG_ALWAYS_INLINE void step(int64_t t, int64_t row0, const T*, bool fresh, int64_t j0, int units,
                             const T (*rec)[kGates][L]) {
    if (a.saved_gates) {
      step_rows<R, true>(t, row0, fresh, j0, units, rec);
    } else {
      step_rows<R, false>(t, row0, fresh, j0, units, rec);
    }
  }

  template <int R, bool kSave>
  FG_GATE_MATH void step_rows(int64_t t, int64_t row0, bool fresh, int64_t j0, int units,
                              const T (*rec)[kGates][L]) {
    const int64_t H = shape.hidden_size;
    const int64_t carried = steps->carried(t);
    const int64_t n0 = steps->offset(t) + row0;  // row of the [N, ...] arrays
    const int64_t gates_stride = a.input.row_stride(4 * H);
    const T* gx = a.input.gates_x + steps->gates_row(t, row0) * gates_stride + j0;
    using V = Lanes<T, R>;
    auto pre = [&](int g) {
      return load_rows<R, T>(strided_rows(gx + g * H, gates_stride), units) +
             load_rows<R, T>([&](int r) { return rec[r][g]; }, L);
    };
    cell::LstmGates<V> in{pre(0), pre(1), pre(2), pre(3)};
    const V c_prev = load_rows<R, T>(strided_rows((fresh ? a.c0 : c_state) + row0 * H + j0, H), units);
    V c, h;
    cell::LstmGates<V> act = cell::lstm_forward(in, c_prev, &c, &h);
    store_rows<R>(strided_rows(c_state + row0 * H + j0, H), c, units);
    if constexpr (kProjected) {
      store_rows<R>(strided_rows(m_state + row0 * H + j0, H), h, units);
    } else {
      store_rows<R>(strided_rows(a.y + n0 * H + j0, H), h, units);
    }
    if constexpr (kSave) {
      T* saved = a.saved_gates + n0 * 4 * H + j0;
      store_rows<R>(strided_rows(saved, 4 * H), act.i, units);
      store_rows<R>(strided_rows(saved + H, 4 * H), act.f, units);
      store_rows<R>(strided_rows(saved + 2 * H, 4 * H), act.g, units);
      store_rows<R>(strided_rows(saved + 3 * H, 4 * H), act.o, units);
      store_rows<R>(strided_rows(a.saved_c + n0 * H + j0, H), c, units);
      if constexpr (kProjected) store_rows<R>(strided_rows(a.saved_m + n0 * H + j0, H), h, units);
    }
    // Rows at or past `carried` end at step t.
    auto ending_rows = [&](T* first) { return [=](int r) { return row0 + r >= carried ? first + r * H : nullptr; }; };
    if constexpr (!kProjected) store_rows<R>(ending_rows(a.h_n + row0 * H + j0), h, units);
    store_rows<R>(ending_rows(a.c_n + row0 * H + j0), c, units);
  }

  template <int R>
  FG_ALWAYS_INLINE void project(int64_t t, int64_t row0, int64_t p0, int units, const T (*h)[1][L]) {
    const int64_t P = shape.proj_size;
    const int64_t carried = steps->carried(t);
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      copy_lanes(a.y + (steps->offset(t) + row) * P + p0, h[r][0], units);
      if (row >= carried) copy_lanes(a.h_n + row * P + p0, h[r][0], units);
    }
  }
};

template <typename T, bool Projected>
struct LstmBackwardCell {
  using Scalar = T;
  static constexpr int kGates = 4;
  static constexpr bool kProjected = Projected;
  static constexpr int L = kLanes<T>;

  LstmBackward<T> a;
  SequenceShape shape;
  const T* w_hh;
  const T* w_hr;
  const StepSchedule* steps = nullptr;
  T* dc_state = nullptr;  // [B, H] dL/dc_t arriving from the step after, in the workspace
  T* dh_state = nullptr;  // [B, P] dL/dh_t of the current step (projection only)
  ColumnSums<T, 4> db_sums;  // of d i, d f, d g, d o: db

  explicit LstmBackwardCell(const LstmBackward<T>& args)
      : a(args), shape(args.shape), w_hh(args.w_hh), w_hr(args.w_hr) {}

  void attach(WorkspaceCarver& w, const StepSchedule* schedule) {
    steps = schedule;
    dc_state = w.take<T>(shape.batch * shape.hidden_size);
    if constexpr (kProjected) dh_state = w.take<T>(shape.batch * shape.proj_size);
    db_sums.attach(w, shape.hidden_size);
  }

  void zero_sums(int64_t j0) { db_sums.zero(j0); }
  void write_sums(int64_t j0, int units) {
    if (!a.db) return;
    for (int g = 0; g < kGates; ++g) db_sums.write(g, j0, units, a.db + g * shape.hidden_size + j0);
  }

  const T* recurrent_gradient(int64_t t) const { return a.dgates + steps->offset(t) * 4 * shape.hidden_size; }
  const T* hidden_gradient() const { return dh_state; }

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
    const T* c_before = continued > 0 ? a.saved_c + steps->offset(steps->before(t)) * H : nullptr;
    const int64_t n0 = steps->offset(t) + row0;
    using V = Lanes<T, R>;
    const T* saved = a.saved_gates + n0 * 4 * H + j0;
    auto saved_gate = [&](int g) { return load_rows<R, T>(strided_rows(saved + g * H, 4 * H), units); };
    cell::LstmGates<V> s{saved_gate(0), saved_gate(1), saved_gate(2), saved_gate(3)};
    // Rows at or past `carried` end at step t: their gradients come from dh_n, dc_n.
    auto ending = [&](int r) { return row0 + r >= carried; };
    V dh;
    if constexpr (kProjected) {
      dh = load_rows<R, T>([&](int r) { return rec[r]; }, L);  // dL/dm_t
    } else {
      dh = load_rows<R, T>([&](int r) { return ending(r) ? a.dh_n + (row0 + r) * H + j0 : rec[r]; },
                           units) +
           load_rows<R, T>(strided_rows(a.dy + n0 * a.dy_stride(H) + j0, a.dy_stride(H)), units);
    }
    const V c = load_rows<R, T>(strided_rows(a.saved_c + n0 * H + j0, H), units);
    const V c_prev =
        load_rows<R, T>([&](int r) { return (row0 + r < continued ? c_before : a.c0) + (row0 + r) * H + j0; }, units);
    const V dc =
        load_rows<R, T>([&](int r) { return (ending(r) ? a.dc_n : dc_state) + (row0 + r) * H + j0; }, units);
    V dc_prev;
    cell::LstmGates<V> d = cell::lstm_backward(s, c, c_prev, dh, dc, &dc_prev);
    T* dgates = a.dgates + n0 * 4 * H + j0;
    store_rows<R>(strided_rows(dgates, 4 * H), d.i, units);
    store_rows<R>(strided_rows(dgates + H, 4 * H), d.f, units);
    store_rows<R>(strided_rows(dgates + 2 * H, 4 * H), d.g, units);
    store_rows<R>(strided_rows(dgates + 3 * H, 4 * H), d.o, units);
    store_rows<R>(strided_rows(dc_state + row0 * H + j0, H), dc_prev, units);
    if (a.db) {
      db_sums.add(0, j0, d.i);
      db_sums.add(1, j0, d.f);
      db_sums.add(2, j0, d.g);
      db_sums.add(3, j0, d.o);
    }
  }

  bool wants_dh0() const { return a.dh0 != nullptr; }

  template <int R>
  FG_ALWAYS_INLINE void initial(int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = shape.hidden_size;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      if (!kProjected && rec) std::memcpy(a.dh0 + row * H + j0, rec[r], units * sizeof(T));
      if (a.dc0) std::memcpy(a.dc0 + row * H + j0, dc_state + row * H + j0, units * sizeof(T));
    }
  }

  // dL/dh_t = dy_t + (the recurrent part, or dL/dh_n for rows that end at step t).
  template <int R>
  FG_ALWAYS_INLINE void projected_step(int64_t t, int64_t row0, int64_t p0, int units, const T (*rec)[L]) {
    const int64_t P = shape.proj_size;
    const int64_t carried = steps->carried(t);
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t n = steps->offset(t) + row;
      const T* later = row >= carried ? a.dh_n + row * P + p0 : rec[r];
      const T* dy = a.dy + n * a.dy_stride(P) + p0;
      T* dh = dh_state + row * P + p0;
      for (int l = 0; l < units; ++l) dh[l] = dy[l] + later[l];
      std::memcpy(a.dh + n * P + p0, dh, units * sizeof(T));
    }
  }

  template <int R>
  FG_ALWAYS_INLINE void projected_initial(int64_t row0, int64_t p0, int units, const T (*rec)[L]) {
    const int64_t P = shape.proj_size;
    for (int r = 0; r < R; ++r) std::memcpy(a.dh0 + (row0 + r) * P + p0, rec[r], units * sizeof(T));
  }
};

}  // namespace fastgates::cpu::FG_CPU_ISA
