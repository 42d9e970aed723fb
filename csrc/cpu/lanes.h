// Lanes<T, Rows>: a block of kLanes hidden units of Rows batch rows, one vector per row, that
// the shared gate math (csrc/cell/) runs on directly, so the CPU kernels apply a cell to a tile
// of rows × units at once with no reliance on the auto-vectoriser. Provides the arithmetic the
// cell templates use and the nonlinearities for vectors. Each operation is applied to every row
// before the next operation starts, so the rows' dependency chains (an exp, a division, a tanh
// after them: over a hundred cycles) run side by side instead of one row after another
// (measured on the LSTM forward, B = 32, H = 128, one thread: 6–9 % faster than a loop over the
// rows). Only the instruction order changes, not the arithmetic. Included only by the per-ISA
// kernel builds.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cell/math.h"
#include "cpu/simd.h"

namespace fastgates::cpu::FG_CPU_ISA {

template <typename T, int Rows = 1>
struct Lanes {
  Vec<T> v[Rows];

  Lanes() = default;
  FG_ALWAYS_INLINE Lanes(T scalar) {
    FG_UNROLL for (int r = 0; r < Rows; ++r) v[r] = Vec<T>{} + scalar;
  }

  // One row's vector at p, and back.
  FG_ALWAYS_INLINE static Lanes load(const T* p) {
    static_assert(Rows == 1, "a tile loads row by row: load_rows");
    Lanes x;
    x.v[0] = FG_CPU_ISA::load(p);
    return x;
  }
  FG_ALWAYS_INLINE void store(T* p) const {
    static_assert(Rows == 1, "a tile stores row by row: store_rows");
    std::memcpy(p, &v[0], sizeof v[0]);
  }
  FG_ALWAYS_INLINE Lanes<T> row(int r) const {
    Lanes<T> x;
    x.v[0] = v[r];
    return x;
  }

  FG_ALWAYS_INLINE friend Lanes operator+(Lanes a, const Lanes& b) {
    FG_UNROLL for (int r = 0; r < Rows; ++r) a.v[r] += b.v[r];
    return a;
  }
  FG_ALWAYS_INLINE friend Lanes operator-(Lanes a, const Lanes& b) {
    FG_UNROLL for (int r = 0; r < Rows; ++r) a.v[r] -= b.v[r];
    return a;
  }
  FG_ALWAYS_INLINE friend Lanes operator*(Lanes a, const Lanes& b) {
    FG_UNROLL for (int r = 0; r < Rows; ++r) a.v[r] *= b.v[r];
    return a;
  }
  FG_ALWAYS_INLINE friend Lanes operator/(Lanes a, const Lanes& b) {
    FG_UNROLL for (int r = 0; r < Rows; ++r) a.v[r] /= b.v[r];
    return a;
  }
  FG_ALWAYS_INLINE friend Lanes operator-(Lanes a) {
    FG_UNROLL for (int r = 0; r < Rows; ++r) a.v[r] = -a.v[r];
    return a;
  }
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

// f(units), with units a compile-time constant when the block is full (every block of a layer
// but its last when kLanes does not divide the layer's size): the gate math of full blocks then
// has no branch on `units` per load and store. Used by the backward cells, whose gate math
// loads and stores the most arrays (measured, Intel Xeon, AVX-512, two builds in one process,
// median time after / before: backward kernels at T = 100, B = 32, H = 256 0.92 (LSTM) and
// 0.87-0.92 (GRU); B = 64, H = 512 0.95 and 0.87-0.88; B = 1 0.95 and 0.95-1.07 (noise). The
// forward cells, 0.98-1.02, keep a run-time `units`).
template <typename T, class F>
FG_ALWAYS_INLINE void with_units(int units, F&& f) {
  if (units == kLanes<T>) {
    f(std::integral_constant<int, kLanes<T>>{});
  } else {
    f(units);
  }
}

// The rows of a tile in an array whose rows are `stride` elements apart, from `first`.
template <typename P>
FG_ALWAYS_INLINE auto strided_rows(P* first, int64_t stride) {
  return [=](int r) { return first + r * stride; };
}

// A tile whose row r is the block at row_pointer(r) (load_lanes); and a tile's rows stored at
// row_pointer(r), skipping the rows whose pointer is null (store_lanes).
template <int Rows, typename T, class RowPointer>
FG_ALWAYS_INLINE Lanes<T, Rows> load_rows(RowPointer row_pointer, int units) {
  Lanes<T, Rows> x;
  FG_UNROLL for (int r = 0; r < Rows; ++r) x.v[r] = load_lanes<T>(row_pointer(r), units).v[0];
  return x;
}

template <int Rows, typename T, class RowPointer>
FG_ALWAYS_INLINE void store_rows(RowPointer row_pointer, const Lanes<T, Rows>& x, int units) {
  FG_UNROLL for (int r = 0; r < Rows; ++r) {
    if (T* p = row_pointer(r)) store_lanes(p, x.row(r), units);
  }
}

// store_rows, but with non-temporal stores where a row's block is a whole vector at an aligned
// address (AVX2 and AVX-512): they write the line without first reading it into the cache. For
// arrays written once by a kernel and read only after it returns; a thread that used them calls
// finish_streams before its work counts as done. Measured on the GRU's backward kernel, which
// writes dgates_x once per step and never reads it (Intel Xeon, 2 threads, two builds
// alternated in one process, time before / after): AVX-512 1.12–1.15 at T = 100, B = 32,
// H = 256, 1.16 at B = 64, 1.10–1.13 at B = 64, H = 512, 1.03–1.06 at B = 1; AVX2 1.06. Not
// for arrays already in cache: streaming the LSTM forward's saved activations, which overwrite
// the projection's lines, took 1.13–1.17 × as long (its saved c alone gained 1.01–1.02).
template <int Rows, typename T, class RowPointer>
FG_ALWAYS_INLINE void stream_rows(RowPointer row_pointer, const Lanes<T, Rows>& x, int units) {
  FG_UNROLL for (int r = 0; r < Rows; ++r) {
    T* p = row_pointer(r);
    // AddressSanitizer does not see the intrinsics' stores: under it, the same whole-vector
    // stores go through store_lanes, which it checks.
#if defined(__AVX2__) && !defined(__SANITIZE_ADDRESS__)
    if (units == kLanes<T> && reinterpret_cast<uintptr_t>(p) % kVectorBytes == 0) {
      stream_vector(p, x.v[r]);
      continue;
    }
#endif
    store_lanes(p, x.row(r), units);
  }
}

// Adds the sum of x's rows (in T, first to last) to the kLanes double sums at `sums`
// (ColumnSums). Summing a tile's rows before widening them: the backward kernels 1.02-1.03 ×
// as fast at B = 32 as with each row widened and added in double.
template <typename T, int Rows>
FG_ALWAYS_INLINE void add_rows(double* sums, const Lanes<T, Rows>& x) {
  typedef double Wide __attribute__((vector_size(sizeof(double) * kLanes<T>)));
  Wide s;
  std::memcpy(&s, sums, sizeof s);
  Vec<T> rows = x.v[0];
  FG_UNROLL for (int r = 1; r < Rows; ++r) rows += x.v[r];
  s += __builtin_convertvector(rows, Wide);
  std::memcpy(sums, &s, sizeof s);
}

// Orders a thread's non-temporal stores (stream_rows) before whatever it does next.
FG_ALWAYS_INLINE void finish_streams() {
#if defined(__AVX2__)
  _mm_sfence();
#endif
}

// The two hooks of cell::exp_fast, for vectors of floats. A NaN fails both comparisons and
// stays NaN.
template <int Rows>
FG_ALWAYS_INLINE Lanes<float, Rows> clamp_exp_argument(Lanes<float, Rows> x) {
  const Vec<float> low = Vec<float>{} - 87.0f, high = Vec<float>{} + 88.0f;
  FG_UNROLL for (int r = 0; r < Rows; ++r) {
    const Vec<float> v = x.v[r] < low ? low : x.v[r];
    x.v[r] = v > high ? high : v;
  }
  return x;
}

template <int Rows>
FG_ALWAYS_INLINE Lanes<float, Rows> times_power_of_two(Lanes<float, Rows> y, Lanes<float, Rows> n) {
  typedef int32_t IntVec __attribute__((vector_size(kVectorBytes)));
  FG_UNROLL for (int r = 0; r < Rows; ++r) {
    const IntVec bits = (__builtin_convertvector(n.v[r], IntVec) + 127) << 23;
    Vec<float> scale;
    std::memcpy(&scale, &bits, sizeof scale);
    y.v[r] *= scale;
  }
  return y;
}

template <int Rows>
FG_ALWAYS_INLINE Lanes<float, Rows> exponential(Lanes<float, Rows> x) {
  return cell::exp_fast(x);
}

template <int Rows>
FG_ALWAYS_INLINE Lanes<float, Rows> hyperbolic_tangent(Lanes<float, Rows> x) {
  return 2.0f * cell::sigmoid(2.0f * x) - 1.0f;
}

// float64 keeps libm's exp and tanh (accuracy first), one lane at a time.
template <int Rows>
FG_ALWAYS_INLINE Lanes<double, Rows> exponential(Lanes<double, Rows> x) {
  for (int r = 0; r < Rows; ++r) {
    for (int l = 0; l < kLanes<double>; ++l) x.v[r][l] = std::exp(x.v[r][l]);
  }
  return x;
}

template <int Rows>
FG_ALWAYS_INLINE Lanes<double, Rows> hyperbolic_tangent(Lanes<double, Rows> x) {
  for (int r = 0; r < Rows; ++r) {
    for (int l = 0; l < kLanes<double>; ++l) x.v[r][l] = std::tanh(x.v[r][l]);
  }
  return x;
}

}  // namespace fastgates::cpu::FG_CPU_ISA
