// Kernels that break the rules on purpose, to check that the emulation (emulation.h) catches
// what it promises to catch, and that the grid barrier and per-block shared memory behave.
// Run from tests/test_cuda_emulated.py through _C.cuda_emulated.check_emulation().
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/recurrence.cuh"

namespace fastgates::cuda_emulated {

namespace {

__global__ void divergent_barrier() {
  if (threadIdx.x == 0) return;
  __syncthreads();
}

__global__ void nothing() {}

__global__ void throws() {
  if (threadIdx.x == 3) throw std::runtime_error("thrown by thread 3");
  __syncthreads();
}

// Each block fills its shared memory with its index, then checks it after a barrier: blocks
// running at the same time must not see each other's shared memory.
__global__ void private_shared_memory(int* failures) {
  FG_DYNAMIC_SHARED(shared);
  int* values = reinterpret_cast<int*>(shared);
  values[threadIdx.x] = static_cast<int>(blockIdx.x);
  __syncthreads();
  for (unsigned i = 0; i < blockDim.x; ++i) {
    if (values[i] != static_cast<int>(blockIdx.x)) atomicAdd(reinterpret_cast<unsigned*>(failures), 1u);
  }
}

// Every block adds 1 to a counter per round and, after the grid barrier, every thread checks
// that all blocks have added theirs.
__global__ void grid_rounds(unsigned* barrier, unsigned* counter, int* failures, int rounds) {
  for (int r = 1; r <= rounds; ++r) {
    if (threadIdx.x == 0) atomicAdd(counter, 1u);
    grid_barrier(barrier);
    if (atomicAdd(counter, 0u) < unsigned(r) * gridDim.x) atomicAdd(reinterpret_cast<unsigned*>(failures), 1u);
    grid_barrier(barrier);
  }
}

}  // namespace

void check_emulation(const std::string& name) {
  const Stream stream{};
  if (name == "divergent_barrier") {
    launch("check", divergent_barrier, dim3(1), dim3(32), 0, false, stream);
  } else if (name == "too_many_threads") {
    launch("check", nothing, dim3(1), dim3(1025), 0, false, stream);
  } else if (name == "too_much_shared_memory") {
    launch("check", nothing, dim3(1), dim3(1), device_properties().shared_bytes_per_block + 1, false, stream);
  } else if (name == "exception") {
    launch("check", throws, dim3(2), dim3(8), 0, false, stream);
  } else if (name == "private_shared_memory" || name == "grid_barrier") {
    std::vector<unsigned> words(2 + 2, 0);  // barrier counters, counter, failures
    int* failures = reinterpret_cast<int*>(&words[3]);
    if (name == "private_shared_memory") {
      launch("check", private_shared_memory, dim3(4), dim3(16), 16 * sizeof(int), true, stream, failures);
    } else {
      launch("check", grid_rounds, dim3(6), dim3(4), 0, true, stream, words.data(), &words[2], failures, 5);
    }
    if (*failures != 0) throw std::runtime_error("check " + name + ": " + std::to_string(*failures) + " failures");
  } else {
    throw std::invalid_argument("unknown emulation check '" + name + "'");
  }
}

}  // namespace fastgates::cuda_emulated
