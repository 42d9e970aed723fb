// The vector type of one instruction-set build of the CPU kernels (GCC/Clang vector
// extensions: the same source becomes SSE, AVX2 or AVX-512 code), and the register-tile sizes
// that fit that instruction set's register file. Included only by the per-ISA translation
// units, inside namespace fastgates::cpu::FG_CPU_ISA.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef FG_CPU_ISA
#error "simd.h belongs to the per-instruction-set kernel builds (define FG_CPU_ISA)"
#endif

#define FG_ALWAYS_INLINE inline __attribute__((always_inline))
// The gate math of a tile stays a function of its own, out of the micro-kernel's loop nest
// (measured: inlining it made the forward no faster, 4–15% slower at B=1).
#define FG_GATE_MATH __attribute__((noinline))
#define FG_STRINGIFY2(x) #x
#define FG_STRINGIFY(x) FG_STRINGIFY2(x)
#define FG_UNROLL _Pragma("GCC unroll 16")

namespace fastgates::cpu::FG_CPU_ISA {

#if defined(FG_VECTOR_BYTES)
// A test build: another instruction set's tiling (see CMakeLists.txt, avx512_layout).
constexpr int kVectorBytes = FG_VECTOR_BYTES;
constexpr int kAccumulators = FG_ACCUMULATORS;
#elif defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kAccumulators = 16;  // of 32 vector registers
#elif defined(__AVX2__)
constexpr int kVectorBytes = 32;
constexpr int kAccumulators = 12;  // of 16 vector registers (measured: 8 and 16 are slower)
#else
constexpr int kVectorBytes = 16;
constexpr int kAccumulators = 12;  // of 16 vector registers (measured: faster than 8)
#endif

template <typename T>
struct VectorOf {
  typedef T type __attribute__((vector_size(kVectorBytes)));
};
template <typename T>
using Vec = typename VectorOf<T>::type;

// Hidden units per vector: the kernels split the hidden units into blocks of this many.
template <typename T>
constexpr int kLanes = kVectorBytes / static_cast<int>(sizeof(T));

template <typename T>
FG_ALWAYS_INLINE Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

#if defined(__AVX2__)
// A non-temporal store of v at p, which must be kVectorBytes-aligned (lanes.h, stream_rows):
// one AVX-512 store, or 32-byte ones (AVX2, also with the avx512_layout build's 64-byte vectors).
template <typename T>
FG_ALWAYS_INLINE void stream_vector(T* p, Vec<T> v) {
  static_assert(kVectorBytes % 32 == 0, "streams whole 32-byte pieces");
#if defined(__AVX512F__)
  if constexpr (kVectorBytes == 64) {
    if constexpr (std::is_same_v<T, float>) {
      _mm512_stream_ps(p, reinterpret_cast<__m512>(v));
    } else {
      _mm512_stream_pd(p, reinterpret_cast<__m512d>(v));
    }
    return;
  }
#endif
  for (int piece = 0; piece < kVectorBytes / 32; ++piece) {
    char* at = reinterpret_cast<char*>(p) + 32 * piece;
    if constexpr (std::is_same_v<T, float>) {
      __m256 part;
      std::memcpy(&part, reinterpret_cast<const char*>(&v) + 32 * piece, 32);
      _mm256_stream_ps(reinterpret_cast<float*>(at), part);
    } else {
      __m256d part;
      std::memcpy(&part, reinterpret_cast<const char*>(&v) + 32 * piece, 32);
      _mm256_stream_pd(reinterpret_cast<double*>(at), part);
    }
  }
}
#endif

// Copies the first `count` of kLanes elements (count <= kLanes). The gate math works on
// full-width vectors loaded from local arrays; only these copies see a partial block at the
// end of the hidden units.
template <typename T>
FG_ALWAYS_INLINE void copy_lanes(T* dst, const T* src, int count) {
  if (count == kLanes<T>) {
    std::memcpy(dst, src, sizeof(T) * kLanes<T>);
  } else {
    for (int l = 0; l < count; ++l) dst[l] = src[l];
  }
}

}  // namespace fastgates::cpu::FG_CPU_ISA
