// The recurrent product of one step, BLIS-style: the weights are packed once per call into
// panels of one block of hidden units, and one register-tiled micro-kernel multiplies a few
// batch rows by a panel. Included only by the per-ISA kernel builds.
#pragma once

#include "cpu/simd.h"

namespace fastgates::cpu::FG_CPU_ISA {

// A panel holds, for one block of kLanes hidden units j0 .. j0+kLanes-1, the weights
// [K][G][kLanes]: element (k, g, l) multiplies input k into gate g of unit j0 + l. Units past
// the end of the layer are zero, so the micro-kernel never needs a partial vector.
template <typename T>
constexpr int64_t panel_elements(int64_t inner, int gates) {
  return inner * gates * kLanes<T>;
}

// Panel of W [G·H, K] (torch.nn weight_hh layout, gate g of unit j in row g·H + j) for the
// forward product h · Wᵀ: inner dimension K = H, G gates.
template <typename T>
void pack_rows_panel(const T* w, int64_t hidden_size, int64_t inner, int gates, int64_t j0,
                     T* panel) {
  const int lanes = kLanes<T>;
  for (int g = 0; g < gates; ++g) {
    for (int l = 0; l < lanes; ++l) {
      const int64_t j = j0 + l;
      const T* row = j < hidden_size ? w + (g * hidden_size + j) * inner : nullptr;
      for (int64_t k = 0; k < inner; ++k) {
        panel[(k * gates + g) * lanes + l] = row ? row[k] : T(0);
      }
    }
  }
}

// Panel of W [K, H] for the backward product dgates · W: `blocks` adjacent blocks of kLanes
// columns j0.. of W side by side ([K][blocks][kLanes]; the micro-kernel's G is `blocks`),
// inner dimension K = G·H. Several blocks per panel give the micro-kernel as many
// independent products per broadcast input as the forward's gates do.
template <typename T>
void pack_columns_panel(const T* w, int64_t hidden_size, int64_t inner, int blocks, int64_t j0, T* panel) {
  const int lanes = kLanes<T>;
  for (int64_t k = 0; k < inner; ++k) {
    for (int b = 0; b < blocks; ++b) {
      for (int l = 0; l < lanes; ++l) {
        const int64_t j = j0 + b * lanes + l;
        panel[(k * blocks + b) * lanes + l] = j < hidden_size ? w[k * hidden_size + j] : T(0);
      }
    }
  }
}

// out[r][g] = Σ_k a[r·lda + k] · panel[k][g][:] for R rows. The sum over k is split into S
// interleaved partial sums (S chains of FMAs hide the FMA latency when R·G is small) that are
// added in a fixed order, so the result depends on the shape only, never on timing or threads.
template <typename T, int R, int G>
FG_ALWAYS_INLINE void micro_kernel(const T* a, int64_t lda, const T* panel, int64_t inner,
                                   Vec<T> out[R][G]) {
  constexpr int kSplitWanted = kAccumulators / (R * G);
  constexpr int S = kSplitWanted < 1 ? 1 : (kSplitWanted > 8 ? 8 : kSplitWanted);
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
      FG_UNROLL for (int g = 0; g < G; ++g) w[g] = load(panel + ((k + s) * G + g) * lanes);
      FG_UNROLL for (int r = 0; r < R; ++r) {
        const T x = a[r * lda + k + s];
        FG_UNROLL for (int g = 0; g < G; ++g) acc[s][r][g] += x * w[g];
      }
    }
  }
  for (; k < inner; ++k) {
    Vec<T> w[G];
    FG_UNROLL for (int g = 0; g < G; ++g) w[g] = load(panel + (k * G + g) * lanes);
    FG_UNROLL for (int r = 0; r < R; ++r) {
      const T x = a[r * lda + k];
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

}  // namespace fastgates::cpu::FG_CPU_ISA
