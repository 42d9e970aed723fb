// LSTM gate math for one hidden unit of one batch row (torch.nn convention, gate order i, f, g, o):
//   c' = σ(f)·c + σ(i)·tanh(g),   h' = σ(o)·tanh(c')
// Shared by the CPU and CUDA kernels; the NumPy reference is written separately.
#pragma once

#include "cell/math.h"

namespace fastgates::cell {

template <typename T>
struct LstmGates {
  T i, f, g, o;
};

// pre: pre-activations of the four gates; c_prev: c_{t-1}.
// Returns the activations σ(i), σ(f), tanh(g), σ(o) (what the backward pass needs) and writes
// c_t, h_t.
template <typename T>
FG_CELL_FN LstmGates<T> lstm_forward(LstmGates<T> pre, T c_prev, T* c, T* h) {
  LstmGates<T> act;
  act.i = sigmoid(pre.i);
  act.f = sigmoid(pre.f);
  act.g = hyperbolic_tangent(pre.g);
  act.o = sigmoid(pre.o);
  *c = act.f * c_prev + act.i * act.g;
  *h = act.o * hyperbolic_tangent(*c);
  return act;
}

// act: activations saved by lstm_forward; c, c_prev: c_t and c_{t-1};
// dh: dL/dh_t (from the output and from step t+1); dc: dL/dc_t arriving from step t+1.
// Returns dL/d(pre-activations) and writes dL/dc_{t-1}.
template <typename T>
FG_CELL_FN LstmGates<T> lstm_backward(LstmGates<T> act, T c, T c_prev, T dh, T dc, T* dc_prev) {
  T tanh_c = hyperbolic_tangent(c);
  T dc_total = dc + dh * act.o * (T(1) - tanh_c * tanh_c);
  LstmGates<T> d;
  d.i = dc_total * act.g * act.i * (T(1) - act.i);
  d.f = dc_total * c_prev * act.f * (T(1) - act.f);
  d.g = dc_total * act.i * (T(1) - act.g * act.g);
  d.o = dh * tanh_c * act.o * (T(1) - act.o);
  *dc_prev = dc_total * act.f;
  return d;
}

}  // namespace fastgates::cell
