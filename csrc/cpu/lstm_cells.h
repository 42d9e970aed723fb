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
                             const T (&rec)[R][kGates][L]) {
    if (a.saved_gates) {
      step_rows<R, true>(t, row0, fresh, j0, units, rec);
    } else {
      step_rows<R, false>(t, row0, fresh, j0, units, rec);
    }
  }

  template <int R, bool kSave>
  FG_GATE_MATH void step_rows(int64_t t, int64_t row0, bool fresh, int64_t j0, int units,
                              const T (&rec)[R][kGates][L]) {
    const int64_t H = shape.hidden_size;
    const int64_t carried = steps->carried(t);
    const int64_t gates_stride = a.input.row_stride(4 * H);
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t n = steps->offset(t) + row;  // row of the [N, ...] arrays
      const T* gx = a.input.gates_x + steps->gates_row(t, row) * gates_stride + j0;
      using V = Lanes<T>;
      cell::LstmGates<V> in{load_lanes(gx, units) + V::load(rec[r][0]), load_lanes(gx + H, units) + V::load(rec[r][1]),
                            load_lanes(gx + 2 * H, units) + V::load(rec[r][2]),
                            load_lanes(gx + 3 * H, units) + V::load(rec[r][3])};
      V c, h;
      const V c_prev = load_lanes((fresh ? a.c0 : c_state) + row * H + j0, units);
      cell::LstmGates<V> act = cell::lstm_forward(in, c_prev, &c, &h);
      store_lanes(c_state + row * H + j0, c, units);
      if constexpr (kProjected) {
        store_lanes(m_state + row * H + j0, h, units);
      } else {
        store_lanes(a.y + n * H + j0, h, units);
      }
      if constexpr (kSave) {
        T* saved = a.saved_gates + n * 4 * H + j0;
        store_lanes(saved, act.i, units);
        store_lanes(saved + H, act.f, units);
        store_lanes(saved + 2 * H, act.g, units);
        store_lanes(saved + 3 * H, act.o, units);
        store_lanes(a.saved_c + n * H + j0, c, units);
        if constexpr (kProjected) store_lanes(a.saved_m + n * H + j0, h, units);
      }
      if (row >= carried) {
        if constexpr (!kProjected) store_lanes(a.h_n + row * H + j0, h, units);
        store_lanes(a.c_n + row * H + j0, c, units);
      }
    }
  }

  template <int R>
  FG_ALWAYS_INLINE void project(int64_t t, int64_t row0, int64_t p0, int units, const T (&h)[R][1][L]) {
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

  explicit LstmBackwardCell(const LstmBackward<T>& args)
      : a(args), shape(args.shape), w_hh(args.w_hh), w_hr(args.w_hr) {}

  void attach(WorkspaceCarver& w, const StepSchedule* schedule) {
    steps = schedule;
    dc_state = w.take<T>(shape.batch * shape.hidden_size);
    if constexpr (kProjected) dh_state = w.take<T>(shape.batch * shape.proj_size);
  }

  const T* recurrent_gradient(int64_t t) const { return a.dgates + steps->offset(t) * 4 * shape.hidden_size; }
  const T* hidden_gradient() const { return dh_state; }

  template <int R>
  FG_GATE_MATH void step(int64_t t, int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = shape.hidden_size;
    const int64_t carried = steps->carried(t);
    const int64_t continued = steps->continued(t);
    const T* c_before = continued > 0 ? a.saved_c + steps->offset(steps->before(t)) * H : nullptr;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t n = steps->offset(t) + row;
      const bool last = row >= carried;
      using V = Lanes<T>;
      const T* saved = a.saved_gates + n * 4 * H + j0;
      cell::LstmGates<V> s{load_lanes(saved, units), load_lanes(saved + H, units), load_lanes(saved + 2 * H, units),
                           load_lanes(saved + 3 * H, units)};
      V dh;
      if constexpr (kProjected) {
        dh = V::load(rec[r]);  // dL/dm_t
      } else {
        const V later = last ? load_lanes(a.dh_n + row * H + j0, units) : V::load(rec[r]);
        dh = later + load_lanes(a.dy + n * H + j0, units);
      }
      const V c = load_lanes(a.saved_c + n * H + j0, units);
      const V c_prev = load_lanes((row < continued ? c_before : a.c0) + row * H + j0, units);
      const V dc = load_lanes((last ? a.dc_n : dc_state) + row * H + j0, units);
      V dc_prev;
      cell::LstmGates<V> d = cell::lstm_backward(s, c, c_prev, dh, dc, &dc_prev);
      T* dgates = a.dgates + n * 4 * H + j0;
      store_lanes(dgates, d.i, units);
      store_lanes(dgates + H, d.f, units);
      store_lanes(dgates + 2 * H, d.g, units);
      store_lanes(dgates + 3 * H, d.o, units);
      store_lanes(dc_state + row * H + j0, dc_prev, units);
    }
  }

  template <int R>
  FG_ALWAYS_INLINE void initial(int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = shape.hidden_size;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      if constexpr (!kProjected) std::memcpy(a.dh0 + row * H + j0, rec[r], units * sizeof(T));
      std::memcpy(a.dc0 + row * H + j0, dc_state + row * H + j0, units * sizeof(T));
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
      const T* dy = a.dy + n * P + p0;
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
