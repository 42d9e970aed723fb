// Element types of the kernels' arrays and the type they compute in: float and double compute
// in themselves; the 16-bit types (cuda::Half, cuda::BFloat16: raw bits, see kernels.h)
// are loaded into float, computed in float, and rounded to nearest even when stored.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda/device.h"
#include "cuda/kernels.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace fastgates::FG_CUDA_NAMESPACE {

template <typename T>
struct Numeric {
  using Acc = T;
  __device__ static __forceinline__ Acc load(T x) { return x; }
  __device__ static __forceinline__ T store(Acc x) { return x; }
  // A load of memory that other blocks wrote during this launch: past the SM's L1 cache.
  __device__ static __forceinline__ T load_coherent(const T* p) { return __ldcg(p); }
};

template <>
struct Numeric<cuda::Half> {
  using Acc = float;
  __device__ static __forceinline__ float load(cuda::Half x) {
#if defined(__CUDACC__)
    return __half2float(__ushort_as_half(x.bits));
#else
    _Float16 h;
    std::memcpy(&h, &x.bits, sizeof h);
    return static_cast<float>(h);
#endif
  }
  __device__ static __forceinline__ cuda::Half store(float x) {
#if defined(__CUDACC__)
    return cuda::Half{__half_as_ushort(__float2half_rn(x))};
#else
    const _Float16 h = static_cast<_Float16>(x);  // rounds to nearest even
    cuda::Half out;
    std::memcpy(&out.bits, &h, sizeof h);
    return out;
#endif
  }
  __device__ static __forceinline__ cuda::Half load_coherent(const cuda::Half* p) {
    return cuda::Half{__ldcg(reinterpret_cast<const unsigned short*>(p))};
  }
};

template <>
struct Numeric<cuda::BFloat16> {
  using Acc = float;
  __device__ static __forceinline__ float load(cuda::BFloat16 x) {
    const uint32_t bits = uint32_t{x.bits} << 16;
#if defined(__CUDACC__)
    return __uint_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
  }
  __device__ static __forceinline__ cuda::BFloat16 store(float x) {
#if defined(__CUDACC__)
    return cuda::BFloat16{__bfloat16_as_ushort(__float2bfloat16_rn(x))};
#else
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return cuda::BFloat16{static_cast<uint16_t>((bits >> 16) | 0x40u)};
    bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
    return cuda::BFloat16{static_cast<uint16_t>(bits >> 16)};
#endif
  }
  __device__ static __forceinline__ cuda::BFloat16 load_coherent(const cuda::BFloat16* p) {
    return cuda::BFloat16{__ldcg(reinterpret_cast<const unsigned short*>(p))};
  }
};

}  // namespace fastgates::FG_CUDA_NAMESPACE
