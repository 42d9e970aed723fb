// What the kernel sources need from the compiler: nvcc's CUDA, or the CPU emulation
// (emulation.h) under a host compiler. The kernels live in FG_CUDA_NAMESPACE, so that both
// builds can be linked into one module: fastgates::cuda (nvcc) or fastgates::cuda_emulated.
#pragma once

#if defined(__CUDACC__)

#define FG_CUDA_NAMESPACE cuda
// The block's dynamic shared memory (the only shared memory the kernels use: see emulation.h).
#define FG_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]

#else

#include "cuda/emulation.h"

#define FG_CUDA_NAMESPACE cuda_emulated

namespace fastgates::cuda_emulated {
using namespace ::fastgates::emulation;
using namespace ::fastgates::emulation::builtins;
}  // namespace fastgates::cuda_emulated

#endif
