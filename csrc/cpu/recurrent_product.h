// The recurrent product of one step, BLIS-style: the weights are packed once per call into
// panels of one block of hidden units, and one register-tiled micro-kernel multiplies a few
// batch rows by a panel. Calls too short to repay the packing use rows_product, which reads the
// weights' rows in place. Included only by the per-ISA kernel builds.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cpu/simd.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastgates::cpu::FG_CPU_ISA {

// A panel holds, for one block of kLanes hidden units j0 .. j0+kLanes-1, the weights
// [K][G][kLanes]: element (k, g, l) multiplies input k into gate g of unit j0 + l. Units past
// the end of the layer are zero, so the micro-kernel never needs a partial vector.
template <typename T>
constexpr int64_t panel_elements(int64_t inner, int gates) {
  return inner * gates * kLanes<T>;
}

#if defined(__AVX2__)
// out[m·out_stride + r] = rows[r·row_stride + m] for r, m < 8: an 8×8 block of float rows,
// transposed in registers.
FG_ALWAYS_INLINE void transpose_8x8(const float* rows, int64_t row_stride, float* out, int64_t out_stride) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(rows + i * row_stride);
  __m256 pairs[8], quads[8];
  for (int i = 0; i < 8; i += 2) {
    pairs[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    pairs[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    quads[i] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0x44);
    quads[i + 1] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0xEE);
    quads[i + 2] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0x44);
    quads[i + 3] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0xEE);
  }
  for (int m = 0; m < 4; ++m) {
    _mm256_storeu_ps(out + m * out_stride, _mm256_permute2f128_ps(quads[m], quads[m + 4], 0x20));
    _mm256_storeu_ps(out + (m + 4) * out_stride, _mm256_permute2f128_ps(quads[m], quads[m + 4], 0x31));
  }
}
#endif

// Panel of W [G·H, K] (torch.nn weight_hh layout, gate g of unit j in row g·H + j) for the
// forward product h · Wᵀ: inner dimension K = H, G gates. Packing is a transposition, paid on
// every call; with AVX2 and float, 8×8 blocks go through registers (measured on the whole
// LSTM forward at T = 1, B = 1, H = 256, most of it packing: 0.28 → 0.11 ms).
template <typename T>
void pack_rows_panel(const T* w, int64_t hidden_size, int64_t inner, int gates, int64_t j0,
                     T* panel) {
  const int lanes = kLanes<T>;
  int64_t k_begin = 0;  // columns [0, k_begin) are packed by blocks
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float> && kLanes<T> % 8 == 0) {
    if (j0 + lanes <= hidden_size) {  // every lane has a row
      k_begin = inner / 8 * 8;
      for (int64_t k0 = 0; k0 < k_begin; k0 += 8) {
        for (int g = 0; g < gates; ++g) {
          for (int l0 = 0; l0 < lanes; l0 += 8) {
            transpose_8x8(w + (g * hidden_size + j0 + l0) * inner + k0, inner,
                          panel + (k0 * gates + g) * lanes + l0, gates * lanes);
          }
        }
      }
    }
  }
#endif
  for (int g = 0; g < gates; ++g) {
    for (int l = 0; l < lanes; ++l) {
      const int64_t j = j0 + l;
      const T* row = j < hidden_size ? w + (g * hidden_size + j) * inner : nullptr;
      for (int64_t k = k_begin; k < inner; ++k) {
        panel[(k * gates + g) * lanes + l] = row ? row[k] : T(0);
      }
    }
  }
}

// Panel of W [K, H] for the backward product dgates · W: `blocks` adjacent blocks of kLanes
// columns j0.. of W side by side ([K][blocks][kLanes]; the micro-kernel's G is `blocks`),
// inner dimension K = G·H. Several blocks per panel give the micro-kernel as many
// independent products per broadcast input as the forward's gates do. Where every column
// exists, W itself is such a panel with row stride H (columns_in_place).
template <typename T>
void pack_columns_panel(const T* w, int64_t hidden_size, int64_t inner, int blocks, int64_t j0, T* panel) {
  const int lanes = kLanes<T>;
  const int64_t width = int64_t{blocks} * lanes;
  if (j0 + width <= hidden_size) {  // every column exists: a panel row is a contiguous row part of W
    for (int64_t k = 0; k < inner; ++k) std::memcpy(panel + k * width, w + k * hidden_size + j0, sizeof(T) * width);
    return;
  }
  for (int64_t k = 0; k < inner; ++k) {
    for (int b = 0; b < blocks; ++b) {
      for (int l = 0; l < lanes; ++l) {
        const int64_t j = j0 + b * lanes + l;
        panel[(k * blocks + b) * lanes + l] = j < hidden_size ? w[k * hidden_size + j] : T(0);
      }
    }
  }
}

// Partial sums per output in micro_kernel<R, G>: the accumulator registers spread over R·G
// outputs, 1 to 8.
template <int R, int G>
constexpr int kSplit = std::clamp(kAccumulators / (R * G), 1, 8);

// Whether a product that passes `passes` times over columns j0 .. j0 + blocks·kLanes of
// W [K, H] (steps × super-tiles of rows) reads W in place, as a panel with row stride H,
// instead of a pack_columns_panel copy. In one pass each weight is read once either way and
// the copy only adds a read and a write of W. Over several passes the copy wins: W's rows,
// spaced by a power of two, crowd a few cache sets and, at 4 KiB, cross a page per row.
// Measured on the LSTM's backward kernel (Intel Xeon, 2 threads, in place / packed time): one
// step, B = 1: 0.55 (H = 256), 0.38 (H = 1024); B = 8: 0.78; B = 32: 0.91 (one super-tile);
// B = 256: 1.07. 100 steps, B = 1: 0.94 (H = 256), 2.12 (H = 512), 1.20 (H = 1024); B = 32:
// 1.17; 8 steps at H = 512: 1.42.
inline bool columns_in_place(int64_t passes, int64_t hidden_size, int blocks, int64_t j0, int lanes) {
  return passes == 1 && j0 + int64_t{blocks} * lanes <= hidden_size;
}

// out[r][g] = Σ_k a(r, k) · panel[k·panel_stride + g·kLanes + :] for R rows (a packed
// panel has panel_stride = G·kLanes), a(r, k) = a[r·lda + k] (rows of a), or a[k·lda + r] with
// ColumnMajorA (a's columns, each lda apart). The sum over k is split into S
// interleaved partial sums (S chains of FMAs hide the FMA latency when R·G is small) that are
// added in a fixed order, so the result depends on the shape and S only, never on timing,
// threads or a's layout.
template <typename T, int R, int G, int S = kSplit<R, G>, bool ColumnMajorA = false>
FG_ALWAYS_INLINE void micro_kernel(const T* a, int64_t lda, const T* panel, int64_t panel_stride, int64_t inner,
                                   Vec<T> out[R][G]) {
  constexpr int lanes = kLanes<T>;
  Vec<T> acc[S][R][G];
  FG_UNROLL for (int s = 0; s < S; ++s) {
    FG_UNROLL for (int r = 0; r < R; ++r) {
      FG_UNROLL for (int g = 0; g < G; ++g) acc[s][r][g] = Vec<T>{};
    }
  }
  int64_t k = 0;
  for (; k + S <= inner; k += S) {
    FG_UNROLL for (int s = 0; s < S; ++s) {
      Vec<T> w[G];
      FG_UNROLL for (int g = 0; g < G; ++g) w[g] = load(panel + (k + s) * panel_stride + g * lanes);
      FG_UNROLL for (int r = 0; r < R; ++r) {
        const T x = ColumnMajorA ? a[(k + s) * lda + r] : a[r * lda + k + s];
        FG_UNROLL for (int g = 0; g < G; ++g) acc[s][r][g] += x * w[g];
      }
    }
  }
  for (; k < inner; ++k) {
    Vec<T> w[G];
    FG_UNROLL for (int g = 0; g < G; ++g) w[g] = load(panel + k * panel_stride + g * lanes);
    FG_UNROLL for (int r = 0; r < R; ++r) {
      const T x = ColumnMajorA ? a[k * lda + r] : a[r * lda + k];
      FG_UNROLL for (int g = 0; g < G; ++g) acc[0][r][g] += x * w[g];
    }
  }
  FG_UNROLL for (int r = 0; r < R; ++r) {
    FG_UNROLL for (int g = 0; g < G; ++g) {
      Vec<T> sum = acc[0][r][g];
      FG_UNROLL for (int s = 1; s < S; ++s) sum += acc[s][r][g];
      out[r][g] = sum;
    }
  }
}

// Lane i of the result: the lanes of a added in pairs across bit Bit of the lane index when
// bit Bit of i is clear, those of b when it is set. One level of lane_sums' tree.
template <typename T, int Bit, int... I>
FG_ALWAYS_INLINE Vec<T> add_lane_pairs(Vec<T> a, Vec<T> b, std::integer_sequence<int, I...>) {
  constexpr int L = kLanes<T>;
  return __builtin_shufflevector(a, b, ((I & Bit) == 0 ? I : L + I - Bit)...) +
         __builtin_shufflevector(a, b, ((I & Bit) == 0 ? I + Bit : L + I)...);
}

// result[l] = the sum of the lanes of v[l], for kLanes vectors: a tree of kLanes - 1 pairwise
// shuffles and additions (level by level, each halving the vectors), always in the same order.
template <typename T, int Count = kLanes<T>, int Bit = 1>
FG_ALWAYS_INLINE Vec<T> lane_sums(const Vec<T>* v) {
  if constexpr (Count == 1) {
    return v[0];
  } else {
    Vec<T> half[Count / 2];
    FG_UNROLL for (int i = 0; i < Count / 2; ++i) {
      half[i] = add_lane_pairs<T, Bit>(v[2 * i], v[2 * i + 1], std::make_integer_sequence<int, kLanes<T>>{});
    }
    return lane_sums<T, Count / 2, Bit * 2>(half);
  }
}

// Rows of x that one tile of rows_product takes: R rows × kLanes/R units fill the kLanes
// accumulators that one lane_sums adds up, and each weight vector loaded serves R rows.
template <typename T>
constexpr int kDirectTileRows = std::min(4, kLanes<T>);

// lane_sums of the products of R rows of x (row stride x_stride) with the kLanes/R weight rows
// w_rows[0..]: lane r·(kLanes/R) + u holds Σ_k x[r·x_stride + k] · w_rows[u][k]. Each lane's
// sum runs along the rows in vectors, in one accumulator, and ends in lane_sums' fixed tree, so
// it does not depend on R.
template <typename T, int R>
FG_ALWAYS_INLINE Vec<T> dot_tile(const T* x, int64_t x_stride, const T* const* w_rows, int64_t inner) {
  constexpr int L = kLanes<T>;
  constexpr int U = L / R;
  const int64_t body = inner / L * L;
  Vec<T> acc[L];
  FG_UNROLL for (int i = 0; i < L; ++i) acc[i] = Vec<T>{};
  for (int64_t k = 0; k < body; k += L) {
    Vec<T> w[U];
    FG_UNROLL for (int u = 0; u < U; ++u) w[u] = load(w_rows[u] + k);
    FG_UNROLL for (int r = 0; r < R; ++r) {
      const Vec<T> xv = load(x + r * x_stride + k);
      FG_UNROLL for (int u = 0; u < U; ++u) acc[r * U + u] += xv * w[u];
    }
  }
  if (body < inner) {  // the last partial vector, zero-padded
    const size_t tail = sizeof(T) * static_cast<size_t>(inner - body);
    T w_tail[U][L] = {};
    for (int u = 0; u < U; ++u) std::memcpy(w_tail[u], w_rows[u] + body, tail);
    for (int r = 0; r < R; ++r) {
      T x_tail[L] = {};
      std::memcpy(x_tail, x + r * x_stride + body, tail);
      const Vec<T> xv = load(x_tail);
      for (int u = 0; u < U; ++u) acc[r * U + u] += xv * load(w_tail[u]);
    }
  }
  return lane_sums<T>(acc);
}

// out[r][g][l] = Σ_k x[r·x_stride + k] · w[(g·H + j0 + l)·inner + k] for r < rows, l < units
// (lanes past units are 0): rows of x times the rows of W [G·H, inner] (torch.nn layout) of one
// block of units, read in place. By tiles of kDirectTileRows rows (then 2, then 1) × kLanes/R
// units (dot_tile); a row's result is the same in any tile. A gate's kLanes weight rows are
// read by every tile of rows in turn, from L1 or L2. For the direct products (recurrence.h,
// direct_products and direct_recurrent_products), where packing would read and write the
// weights before the product reads them.
template <typename T, int G>
FG_ALWAYS_INLINE void rows_product(const T* x, int64_t x_stride, int64_t rows, const T* w, int64_t hidden_size,
                                   int64_t inner, int64_t j0, int units, T (*out)[G][kLanes<T>]) {
  constexpr int L = kLanes<T>;
  for (int g = 0; g < G; ++g) {
    const T* w_rows[L];
    // Lanes past the last unit repeat its row (in bounds) and are zeroed below.
    for (int l = 0; l < L; ++l) w_rows[l] = w + (g * hidden_size + j0 + std::min(l, units - 1)) * inner;
    int64_t r0 = 0;
    auto tiles = [&](auto tile_rows) {
      constexpr int R = decltype(tile_rows)::value;
      constexpr int U = L / R;
      for (; r0 + R <= rows; r0 += R) {
        for (int u0 = 0; u0 < L; u0 += U) {
          const Vec<T> v = u0 < units ? dot_tile<T, R>(x + r0 * x_stride, x_stride, w_rows + u0, inner) : Vec<T>{};
          if constexpr (R == 1) {
            std::memcpy(out[r0][g], &v, sizeof v);
          } else {
            T sums[L];
            std::memcpy(sums, &v, sizeof v);
            for (int r = 0; r < R; ++r) {
              for (int u = 0; u < U; ++u) out[r0 + r][g][u0 + u] = sums[r * U + u];
            }
          }
        }
      }
    };
    tiles(std::integral_constant<int, kDirectTileRows<T>>{});
    if constexpr (kDirectTileRows<T> > 2) tiles(std::integral_constant<int, 2>{});
    tiles(std::integral_constant<int, 1>{});
    for (int64_t r = 0; r < rows; ++r) {
      for (int l = units; l < L; ++l) out[r][g][l] = T(0);
    }
  }
}

}  // namespace fastgates::cpu::FG_CPU_ISA
