// The LSTM's part of the CPU time loop (recurrence.h): gate math on one tile of rows × units,
// reading and writing the arrays of LstmForward / LstmBackward (kernels.h).
#pragma once

#include "cell/lstm.h"
#include "cpu/recurrence.h"

namespace fastgates::cpu::FG_CPU_ISA {

template <typename T>
struct LstmForwardCell {
  using Scalar = T;
  static constexpr int kGates = 4;
  static constexpr int L = kLanes<T>;

  LstmForward<T> a;
  int64_t steps, batch, hidden_size;
  const T* w_hh;
  T* c_state = nullptr;  // [B, H] c_{t-1}, in the workspace

  explicit LstmForwardCell(const LstmForward<T>& args)
      : a(args), steps(args.shape.steps), batch(args.shape.batch),
        hidden_size(args.shape.hidden_size), w_hh(args.w_hh) {}

  void attach_state(T* state, int64_t) { c_state = state; }

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
      const T* gx = a.gates_x + bt * 4 * H + j0;
      T pre[4][L] = {}, c_prev[L] = {}, c[L], h[L], act[4][L];
      for (int g = 0; g < 4; ++g) copy_lanes(pre[g], gx + g * H, units);
      copy_lanes(c_prev, (t == 0 ? a.c0 : c_state) + row * H + j0, units);
      for (int l = 0; l < L; ++l) {
        cell::LstmGates<T> in{pre[0][l] + rec[r][0][l], pre[1][l] + rec[r][1][l], pre[2][l] + rec[r][2][l],
                              pre[3][l] + rec[r][3][l]};
        cell::LstmGates<T> out = cell::lstm_forward(in, c_prev[l], &c[l], &h[l]);
        act[0][l] = out.i;
        act[1][l] = out.f;
        act[2][l] = out.g;
        act[3][l] = out.o;
      }
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

  void attach_state(T* state, int64_t) { dc_state = state; }

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
      for (int l = 0; l < L; ++l) {
        cell::LstmGates<T> s{act[0][l], act[1][l], act[2][l], act[3][l]};
        cell::LstmGates<T> d = cell::lstm_backward(s, c[l], c_prev[l], dh[l], dc[l], &dc_prev[l]);
        dg[0][l] = d.i;
        dg[1][l] = d.f;
        dg[2][l] = d.g;
        dg[3][l] = d.o;
      }
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
