// The float32 arithmetic peak of one core for an instruction-set build: multiply-adds on
// independent vectors held in registers, with no memory traffic. The benchmarks divide the
// kernels' GFLOP/s by it (dispatch.cpp: peak_gflops). Included only by the per-ISA builds.
#pragma once

#include <cstdint>

#include "cpu/simd.h"

namespace fastgates::cpu::FG_CPU_ISA {

// Independent chains: enough to cover the latency of an FMA (4 cycles) times the FMA pipes of
// a core (2) with room to spare, within the 16 registers of AVX2. The avx512_layout build's
// 64-byte vectors take two AVX2 registers each: half as many chains.
#if defined(FG_VECTOR_BYTES) && FG_VECTOR_BYTES > 32 && !defined(__AVX512F__)
constexpr int kChains = 6;
#else
constexpr int kChains = 12;
#endif

// Runs `rounds` rounds of one multiply-add on each of kChains vectors and returns the FLOP
// done. `sink` keeps the result alive (one float). Not inline: dispatch.cpp calls it through
// each build's symbol.
int64_t multiply_add_rounds(int64_t rounds, float* sink) {
  Vec<float> acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = Vec<float>{} + 1.0f / float(c + 1);
  const Vec<float> scale = Vec<float>{} + 0.999999f, offset = Vec<float>{} + 1e-7f;
  for (int64_t r = 0; r < rounds; ++r) {
    // Contracted to one FMA each, as in the kernels' products (without -ffast-math the
    // compiler may not merge rounds).
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * scale + offset;
  }
  Vec<float> total = Vec<float>{};
  for (int c = 0; c < kChains; ++c) total += acc[c];
  float sum = 0;
  for (int l = 0; l < kLanes<float>; ++l) sum += total[l];
  *sink = sum;
  return rounds * kChains * kLanes<float> * 2;
}

}  // namespace fastgates::cpu::FG_CPU_ISA
