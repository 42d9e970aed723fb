// Kernel launches and CUDA API calls for the host code of both builds: under nvcc `<<<>>>` or a
// cooperative launch, each checked, an error becoming std::runtime_error naming the operation;
// under the host compiler the emulation (emulation.h).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "cuda/device.h"
#include "cuda/kernels.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#include <tuple>
#endif

namespace fastgates::FG_CUDA_NAMESPACE {

#if defined(__CUDACC__)

using Stream = cudaStream_t;

inline void check(cudaError_t error, const char* op, const char* what) {
  if (error != cudaSuccess) {
    throw std::runtime_error(std::string("fastgates ") + op + ": " + what + " failed: " + cudaGetErrorName(error) +
                             " (" + cudaGetErrorString(error) + ")");
  }
}

// Launches kernel(args...) on `stream` and checks the launch.
template <typename... Params, typename... Args>
void launch(const char* op, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, bool cooperative,
            Stream stream, Args... args) {
  // Above 48 KiB a kernel must opt in to its dynamic shared memory.
  if (shared_bytes > 48 * 1024) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
          op, "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  }
  if (cooperative) {
    std::tuple<Params...> values(args...);
    void* pointers[sizeof...(Params)];
    std::apply([&](auto&... v) {
      int i = 0;
      ((pointers[i++] = static_cast<void*>(&v)), ...);
    }, values);
    // Fails with cudaErrorCooperativeLaunchTooLarge unless every block can be resident at once.
    check(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), grid, block, pointers, shared_bytes,
                                      stream),
          op, "cudaLaunchCooperativeKernel");
  } else {
    kernel<<<grid, block, shared_bytes, stream>>>(args...);
  }
  check(cudaGetLastError(), op, "kernel launch");
}

inline void zero_async(void* data, size_t bytes, Stream stream, const char* op) {
  check(cudaMemsetAsync(data, 0, bytes, stream), op, "cudaMemsetAsync");
}

#else

struct Stream {};

template <typename... Params, typename... Args>
void launch(const char* op, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, bool cooperative,
            Stream, Args... args) {
  emulation::run_kernel(op, grid, block, shared_bytes, device_properties().shared_bytes_per_block, cooperative,
                    [&] { kernel(args...); });
}

inline void zero_async(void* data, size_t bytes, Stream, const char*) { std::memset(data, 0, bytes); }

#endif

}  // namespace fastgates::FG_CUDA_NAMESPACE
