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
  FG_ALWAYS_INLINE void step_rows(int64_t t, int64_t row0, int64_t j0, int units, const T (&rec)[R][kGates][L]) {
    const int64_t H = hidden_size;
    const bool last = t + 1 == steps;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;  // row of the [T, B, ...] arrays
      const T* gx = a.gates_x + bt * 4 * H + j0;
      const T* c_prev = (t == 0 ? a.c0 : c_state) + row * H + j0;
      T* c_out = c_state + row * H + j0;
      T* h_out = a.y + bt * H + j0;
      T* saved_g = kSave ? a.saved_gates + bt * 4 * H + j0 : nullptr;
      T* saved_c = kSave ? a.saved_c + bt * H + j0 : nullptr;
      for (int l = 0; l < units; ++l) {
        cell::LstmGates<T> pre{gx[l] + rec[r][0][l], gx[H + l] + rec[r][1][l], gx[2 * H + l] + rec[r][2][l],
                               gx[3 * H + l] + rec[r][3][l]};
        T c, h;
        cell::LstmGates<T> act = cell::lstm_forward(pre, c_prev[l], &c, &h);
        c_out[l] = c;
        h_out[l] = h;
        if constexpr (kSave) {
          saved_g[l] = act.i;
          saved_g[H + l] = act.f;
          saved_g[2 * H + l] = act.g;
          saved_g[3 * H + l] = act.o;
          saved_c[l] = c;
        }
      }
      if (last) {
        std::memcpy(a.h_n + row * H + j0, h_out, units * sizeof(T));
        std::memcpy(a.c_n + row * H + j0, c_out, units * sizeof(T));
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
  FG_ALWAYS_INLINE void step(int64_t t, int64_t row0, int64_t j0, int units, const T (*rec)[L]) {
    const int64_t H = hidden_size;
    const bool last = t + 1 == steps;
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const int64_t bt = t * batch + row;
      const T* act = a.saved_gates + bt * 4 * H + j0;
      const T* c = a.saved_c + bt * H + j0;
      const T* c_prev = t == 0 ? a.c0 + row * H + j0 : a.saved_c + (bt - batch) * H + j0;
      const T* dy = a.dy + bt * H + j0;
      const T* dh_later = last ? a.dh_n + row * H + j0 : rec[r];
      const T* dc_later = last ? a.dc_n + row * H + j0 : dc_state + row * H + j0;
      T* dc_out = dc_state + row * H + j0;
      T* dg = a.dgates + bt * 4 * H + j0;
      for (int l = 0; l < units; ++l) {
        cell::LstmGates<T> s{act[l], act[H + l], act[2 * H + l], act[3 * H + l]};
        T dc_prev;
        cell::LstmGates<T> d = cell::lstm_backward(s, c[l], c_prev[l], dy[l] + dh_later[l], dc_later[l], &dc_prev);
        dg[l] = d.i;
        dg[H + l] = d.f;
        dg[2 * H + l] = d.g;
        dg[3 * H + l] = d.o;
        dc_out[l] = dc_prev;
      }
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
