// The LSTM's part of the CPU time loop (recurrence.h): gate math on one tile of rows × units,
// reading and writing the arrays of LstmForward / LstmBackward (kernels.h).
#pragma once

#include "cell/lstm.h"
#include "cpu/lanes.h"
#include "cpu/recurrence.h"

namespace fastgates::cpu::FG_CPU_ISA {

template <typename T>
struct LstmForwardCell {
  using Scalar = T;
  static constexpr int kGates = 4;
  static constexpr int L = kLanes<T>;

  LstmForward<T> a;
  int64_t steps, batch, hidden_size, input_size;
  const T* w_hh;
  T* c_state = nullptr;  // [B, H] c_{t-1}, in the workspace

  explicit LstmForwardCell(const LstmForward<T>& args)
      : a(args), steps(args.shape.steps), batch(args.shape.batch),
        hidden_size(args.shape.hidden_size), input_size(args.shape.input_size), w_hh(args.w_hh) {}

  void attach_state(T* state) { c_state = state; }

  const InputProjection<T>& input() const { return a.input; }

  const T* hidden_before(int64_t t) const { return t == 0 ? a.h0 : a.y + (t - 1) * batch * hidden_size; }

  template <int R>
  FG_ALWAYS_INLINE void step(int64_t t, int64_t row0, int64_t j0, int units, const T (&rec)[R][kGates][L]) {
    if (a.saved_gates) {
      step_rows<R, true>(t, row0, j0, units, rec);
    } else {
      step_rows<R, false>(t, row0, j0, units, rec);
    }
  }

  template <int R, bool kSave>
  FG_GATE_MATH void step_rows(int64_t t, int64_t row0, int64_t j0, int units, const T (&rec)[R][kGates][L]) {
    const int64_t H = hidden_size;
    const bool last = t + 1 == steps;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;  // row of the [T, B, ...] arrays
      const T* gx = a.input.gates_x + bt * 4 * H + j0;
      T pre[4][L] = {}, c_prev[L] = {}, c[L], h[L], act[4][L];
      for (int g = 0; g < 4; ++g) copy_lanes(pre[g], gx + g * H, units);
      copy_lanes(c_prev, (t == 0 ? a.c0 : c_state) + row * H + j0, units);
      using V = Lanes<T>;
      cell::LstmGates<V> in{V::load(pre[0]) + V::load(rec[r][0]), V::load(pre[1]) + V::load(rec[r][1]),
                            V::load(pre[2]) + V::load(rec[r][2]), V::load(pre[3]) + V::load(rec[r][3])};
      V c_new, h_new;
      cell::LstmGates<V> out = cell::lstm_forward(in, V::load(c_prev), &c_new, &h_new);
      c_new.store(c);
      h_new.store(h);
      out.i.store(act[0]);
      out.f.store(act[1]);
      out.g.store(act[2]);
      out.o.store(act[3]);
      copy_lanes(c_state + row * H + j0, c, units);
      copy_lanes(a.y + bt * H + j0, h, units);
      if constexpr (kSave) {
        for (int g = 0; g < 4; ++g) copy_lanes(a.saved_gates + bt * 4 * H + g * H + j0, act[g], units);
        copy_lanes(a.saved_c + bt * H + j0, c, units);
      }
      if (last) {
        copy_lanes(a.h_n + row * H + j0, h, units);
        copy_lanes(a.c_n + row * H + j0, c, units);
      }
    }
  }
};

template <typename T>
struct LstmBackwardCell {
  using Scalar = T;
  static constexpr int kGates = 4;
  static constexpr int L = kLanes<T>;

  LstmBackward<T> a;
  int64_t steps, batch, hidden_size;
  const T* w_hh;
  T* dc_state = nullptr;  // [B, H] dL/dc_t arriving from step t+1, in the workspace

  explicit LstmBackwardCell(const LstmBackward<T>& args)
      : a(args), steps(args.shape.steps), batch(args.shape.batch),
        hidden_size(args.shape.hidden_size), w_hh(args.w_hh) {}

  void attach_state(T* state) { dc_state = state; }

  const T* recurrent_gradient(int64_t t) const { return a.dgates + t * batch * 4 * hidden_size; }

  template <int R>
  FG_GATE_MATH void step(int64_t t, int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = hidden_size;
    const bool last = t + 1 == steps;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;
      T act[4][L] = {}, c[L] = {}, c_prev[L] = {}, dh[L] = {}, dc[L] = {}, dg[4][L], dc_prev[L];
      for (int g = 0; g < 4; ++g) copy_lanes(act[g], a.saved_gates + bt * 4 * H + g * H + j0, units);
      copy_lanes(c, a.saved_c + bt * H + j0, units);
      copy_lanes(c_prev, t == 0 ? a.c0 + row * H + j0 : a.saved_c + (bt - batch) * H + j0, units);
      copy_lanes(dh, last ? a.dh_n + row * H + j0 : rec[r], units);
      copy_lanes(dc, (last ? a.dc_n : dc_state) + row * H + j0, units);
      const T* dy = a.dy + bt * H + j0;
      for (int l = 0; l < units; ++l) dh[l] += dy[l];
      using V = Lanes<T>;
      cell::LstmGates<V> s{V::load(act[0]), V::load(act[1]), V::load(act[2]), V::load(act[3])};
      V dc_prev_v;
      cell::LstmGates<V> d = cell::lstm_backward(s, V::load(c), V::load(c_prev), V::load(dh), V::load(dc), &dc_prev_v);
      dc_prev_v.store(dc_prev);
      d.i.store(dg[0]);
      d.f.store(dg[1]);
      d.g.store(dg[2]);
      d.o.store(dg[3]);
      for (int g = 0; g < 4; ++g) copy_lanes(a.dgates + bt * 4 * H + g * H + j0, dg[g], units);
      copy_lanes(dc_state + row * H + j0, dc_prev, units);
    }
  }

  template <int R>
  FG_ALWAYS_INLINE void initial(int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = hidden_size;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      std::memcpy(a.dh0 + row * H + j0, rec[r], units * sizeof(T));
      std::memcpy(a.dc0 + row * H + j0, dc_state + row * H + j0, units * sizeof(T));
    }
  }
};

}  // namespace fastgates::cpu::FG_CPU_ISA
