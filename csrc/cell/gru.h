// GRU gate math for one hidden unit of one batch row, torch.nn/cuDNN form (gate order r, z, n;
// the reset gate multiplies the recurrent part of n after the matmul):
//   r = σ(x_r + h_r),  z = σ(x_z + h_z),  n = tanh(x_n + r·h_n),  h' = (1 − z)·n + z·h
// where x_* = (x W_ihᵀ + b_ih)_* and h_* = (h W_hhᵀ + b_hh)_*.
// Shared by the CPU and CUDA kernels; the NumPy reference is written separately.
#pragma once

#include "cell/math.h"

namespace fastgates::cell {

template <typename T>
struct GruGates {
  T r, z, n;
};

// What the backward pass needs of one step: the activations and the recurrent part of n.
template <typename T>
struct GruSaved {
  T r, z, n, h_n;
};

// x, h: input and recurrent parts of the pre-activations; h_prev: h_{t-1}. Writes h_t.
template <typename T>
FG_CELL_FN GruSaved<T> gru_forward(GruGates<T> x, GruGates<T> h, T h_prev, T* h_new) {
  GruSaved<T> s;
  s.r = sigmoid(x.r + h.r);
  s.z = sigmoid(x.z + h.z);
  s.n = hyperbolic_tangent(x.n + s.r * h.n);
  s.h_n = h.n;
  *h_new = (T(1) - s.z) * s.n + s.z * h_prev;
  return s;
}

// s: saved by gru_forward; h_prev: h_{t-1}; dh: dL/dh_t.
// Writes dL/d(input part) to *dx, dL/d(recurrent part) to *dh_part, and returns the part of
// dL/dh_{t-1} that bypasses W_hh (z·dh).
template <typename T>
FG_CELL_FN T gru_backward(GruSaved<T> s, T h_prev, T dh, GruGates<T>* dx, GruGates<T>* dh_part) {
  T dn = dh * (T(1) - s.z) * (T(1) - s.n * s.n);
  T dz = dh * (h_prev - s.n) * s.z * (T(1) - s.z);
  T dr = dn * s.h_n * s.r * (T(1) - s.r);
  dx->r = dr;
  dx->z = dz;
  dx->n = dn;
  dh_part->r = dr;
  dh_part->z = dz;
  dh_part->n = dn * s.r;
  return dh * s.z;
}

}  // namespace fastgates::cell
