// Lanes<T>: one vector of kLanes values that the shared gate math (csrc/cell/) runs on
// directly, so the CPU kernels apply a cell to a whole block of hidden units at once with no
// reliance on the auto-vectoriser. Provides the arithmetic the cell templates use and the
// nonlinearities for vectors. Included only by the per-ISA kernel builds.
#pragma once

#include <cmath>

#include "cell/math.h"
#include "cpu/simd.h"

namespace fastgates::cpu::FG_CPU_ISA {

template <typename T>
struct Lanes {
  Vec<T> v;

  Lanes() = default;
  FG_ALWAYS_INLINE Lanes(Vec<T> vector) : v(vector) {}
  FG_ALWAYS_INLINE Lanes(T scalar) : v(Vec<T>{} + scalar) {}

  FG_ALWAYS_INLINE static Lanes load(const T* p) { return Lanes(FG_CPU_ISA::load(p)); }
  FG_ALWAYS_INLINE void store(T* p) const { std::memcpy(p, &v, sizeof v); }

  FG_ALWAYS_INLINE friend Lanes operator+(Lanes a, Lanes b) { return a.v + b.v; }
  FG_ALWAYS_INLINE friend Lanes operator-(Lanes a, Lanes b) { return a.v - b.v; }
  FG_ALWAYS_INLINE friend Lanes operator*(Lanes a, Lanes b) { return a.v * b.v; }
  FG_ALWAYS_INLINE friend Lanes operator/(Lanes a, Lanes b) { return a.v / b.v; }
  FG_ALWAYS_INLINE friend Lanes operator-(Lanes a) { return -a.v; }
};

// The block of `units` (≤ kLanes) values at p as a vector, lanes past `units` zero; and the
// first `units` lanes of v stored at p. Full blocks, the common case, go straight between
// memory and register: staging them in a local array costs a store-forwarding stall per load
// (measured: a fifth of the LSTM backward kernel's time).
template <typename T>
FG_ALWAYS_INLINE Lanes<T> load_lanes(const T* p, int units) {
  if (units == kLanes<T>) return Lanes<T>::load(p);
  T part[kLanes<T>] = {};
  for (int l = 0; l < units; ++l) part[l] = p[l];
  return Lanes<T>::load(part);
}

template <typename T>
FG_ALWAYS_INLINE void store_lanes(T* p, Lanes<T> v, int units) {
  if (units == kLanes<T>) {
    v.store(p);
    return;
  }
  T part[kLanes<T>];
  v.store(part);
  for (int l = 0; l < units; ++l) p[l] = part[l];
}

// The two hooks of cell::exp_fast, for a vector of floats. A NaN fails both comparisons and
// stays NaN.
FG_ALWAYS_INLINE Lanes<float> clamp_exp_argument(Lanes<float> x) {
  const Vec<float> low = Vec<float>{} - 87.0f, high = Vec<float>{} + 88.0f;
  Vec<float> v = x.v < low ? low : x.v;
  return v > high ? high : v;
}

FG_ALWAYS_INLINE Lanes<float> times_power_of_two(Lanes<float> y, Lanes<float> n) {
  typedef int32_t IntVec __attribute__((vector_size(kVectorBytes)));
  IntVec bits = (__builtin_convertvector(n.v, IntVec) + 127) << 23;
  Vec<float> scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y.v * scale;
}

FG_ALWAYS_INLINE Lanes<float> exponential(Lanes<float> x) { return cell::exp_fast(x); }

FG_ALWAYS_INLINE Lanes<float> hyperbolic_tangent(Lanes<float> x) {
  return 2.0f * cell::sigmoid(2.0f * x) - 1.0f;
}

// float64 keeps libm's exp and tanh (accuracy first), one lane at a time.
FG_ALWAYS_INLINE Lanes<double> exponential(Lanes<double> x) {
  for (int l = 0; l < kLanes<double>; ++l) x.v[l] = std::exp(x.v[l]);
  return x;
}

FG_ALWAYS_INLINE Lanes<double> hyperbolic_tangent(Lanes<double> x) {
  for (int l = 0; l < kLanes<double>; ++l) x.v[l] = std::tanh(x.v[l]);
  return x;
}

}  // namespace fastgates::cpu::FG_CPU_ISA
