// Scalar math shared by the CPU and CUDA kernels: compiles as host code and, under nvcc, as
// device code. Every function is `static inline` so that each translation unit keeps its own
// copy: the CPU kernels are compiled once per instruction set, and a shared (merged) copy could
// carry AVX-512 instructions into the portable build.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

// Always inlined: the CPU kernels' lane loops only vectorise when the whole cell is inlined
// into them.
#if defined(__CUDACC__)
#define FG_CELL_FN __host__ __device__ static __forceinline__
#else
#define FG_CELL_FN static inline __attribute__((always_inline))
#endif

namespace fastgates::cell {

// exp for float without branches or library calls: range reduction x = n·ln2 + r with
// |r| ≤ ln2/2, a degree-6 polynomial for e^r (Cephes' minimax coefficients), and 2^n built in
// the exponent bits. Relative error ≈ 2e-7; the input is clamped to the range where the result
// is a normal float (NaN stays NaN). A template so that the CPU kernels can run it on a whole
// vector of lanes: F is float or a lane type that provides clamp_exp_argument and
// times_power_of_two for itself (found by argument-dependent lookup).
FG_CELL_FN float clamp_exp_argument(float x) {
  x = x < -87.0f ? -87.0f : x;
  return x > 88.0f ? 88.0f : x;
}

// y · 2^n for an integral-valued n in [-126, 127].
FG_CELL_FN float times_power_of_two(float y, float n) {
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

template <typename F>
FG_CELL_FN F exp_fast(F x) {
  x = clamp_exp_argument(x);
  // Round-to-nearest of x·log2(e) by adding and subtracting 1.5·2^23 (no floor() call).
  const F shifter = 12582912.0f;
  F n = (x * 1.44269504088896341f + shifter) - shifter;
  F r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  F p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return times_power_of_two(p * r * r + r + 1.0f, n);
}

FG_CELL_FN float exponential(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return exp_fast(x);
#endif
}
FG_CELL_FN double exponential(double x) { return exp(x); }

template <typename T>
FG_CELL_FN T sigmoid(T x) {
  return T(1) / (T(1) + exponential(-x));
}

// tanh(x) = 2σ(2x) − 1 for float (absolute error ≈ 1e-7, vectorises); libm's tanh for double.
FG_CELL_FN float hyperbolic_tangent(float x) { return 2.0f * sigmoid(2.0f * x) - 1.0f; }
FG_CELL_FN double hyperbolic_tangent(double x) { return tanh(x); }

}  // namespace fastgates::cell
