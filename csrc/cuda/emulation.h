// A small, strict emulation of the CUDA execution model on the CPU, so that the kernel sources
// (csrc/cuda/*.cuh) compile with g++ and run in the tests of a machine without a GPU.
//
// Model: every CUDA thread is one POSIX thread. A launch runs its blocks one after another,
// each block's threads concurrently (CUDA gives no order between blocks, and a kernel that
// waits for another block of an ordinary launch is wrong: here it hangs instead of passing by
// luck); a cooperative launch runs all blocks concurrently, as the GPU guarantees.
//
// What it provides, and nothing more (a kernel that uses anything else does not compile):
//   dim3; threadIdx, blockIdx, blockDim, gridDim (one per thread); __global__, __device__,
//   __host__, __forceinline__, __launch_bounds__ (ignored: the launch checks the block size);
//   __syncthreads(); dynamic shared memory only, through FG_DYNAMIC_SHARED (there is no
//   `__shared__`, so a static shared array does not compile: a per-block copy of it cannot be
//   emulated without a compiler); atomicAdd, atomicExch on unsigned int; __threadfence();
//   __nanosleep(); __ldcg(). No warp shuffles: the kernels reduce through shared memory.
// What it checks: block and grid sizes against the CUDA limits, dynamic shared memory against
// the limit the launch passes (and it fills it with NaN bytes first), and __syncthreads
// divergence (a thread that leaves the kernel while the others of its block wait at a barrier,
// or a barrier reached after a thread left).
// An error in any thread (a violation above or an exception thrown by kernel code) stops every
// thread of the launch and is rethrown by run_kernel() as std::runtime_error.
// Small shapes only: a block of 256 threads is 256 POSIX threads.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)

// `extern __shared__ unsigned char name[]` under nvcc; here the running block's buffer.
#define FG_DYNAMIC_SHARED(name) unsigned char* name = ::fastgates::emulation::dynamic_shared_memory()

namespace fastgates::emulation {

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// Thrown inside emulated threads to unwind them when the launch has failed.
struct LaunchAborted {};

class Launch;

// One thread block: its shared memory and its barrier.
class Block {
 public:
  // Shared memory starts as all-ones bytes (NaN as float or double): on the GPU it starts as
  // garbage, and a kernel that reads it before writing it should fail the tests.
  static constexpr unsigned char kUninitialised = 0xff;

  Block(Launch& launch, unsigned threads, size_t shared_bytes)
      : launch_(launch), threads_(threads), shared_(shared_bytes ? shared_bytes : 1, kUninitialised) {}

  unsigned char* shared() { return shared_.data(); }

  void sync();
  void thread_exited();
  void wake_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    condition_.notify_all();
  }

 private:
  Launch& launch_;
  const unsigned threads_;
  std::vector<unsigned char> shared_;
  std::mutex mutex_;
  std::condition_variable condition_;
  unsigned arrived_ = 0;
  unsigned exited_ = 0;
  uint64_t generation_ = 0;
};

// The state of one kernel launch shared by all its threads: the first error, and the blocks
// to wake when it happens.
class Launch {
 public:
  bool failed() const { return failed_.load(std::memory_order_acquire); }

  // Records the first error and wakes every waiting thread so that all of them unwind.
  void fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failed_.load(std::memory_order_relaxed)) return;
      message_ = message;
      failed_.store(true, std::memory_order_release);
    }
    std::vector<Block*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks = blocks_;
    }
    for (Block* b : blocks) b->wake_all();
  }

  void add_block(Block* b) {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.push_back(b);
  }
  void remove_blocks() {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.clear();
  }

  std::string message() {
    std::lock_guard<std::mutex> lock(mutex_);
    return message_;
  }

 private:
  std::mutex mutex_;
  std::atomic<bool> failed_{false};
  std::string message_;
  std::vector<Block*> blocks_;
};

inline thread_local Block* current_block = nullptr;
inline thread_local Launch* current_launch = nullptr;

inline void Block::sync() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (exited_ > 0) {
    lock.unlock();
    launch_.fail("__syncthreads divergence: a barrier was reached after a thread of the block had exited");
    throw LaunchAborted{};
  }
  const uint64_t generation = generation_;
  if (++arrived_ == threads_) {
    arrived_ = 0;
    ++generation_;
    condition_.notify_all();
    return;
  }
  condition_.wait(lock, [&] { return generation_ != generation || launch_.failed(); });
  if (generation_ == generation) throw LaunchAborted{};
}

inline void Block::thread_exited() {
  bool divergent;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++exited_;
    divergent = arrived_ > 0;
  }
  if (divergent) launch_.fail("__syncthreads divergence: a thread exited while others of its block wait at a barrier");
}

inline unsigned char* dynamic_shared_memory() { return current_block->shared(); }

struct ThreadStart {
  Launch* launch;
  Block* block;
  dim3 thread, block_index, block_dim, grid_dim;
  const std::function<void()>* body;
};

inline void* run_thread(void* raw) {
  const ThreadStart& s = *static_cast<const ThreadStart*>(raw);
  threadIdx = s.thread;
  blockIdx = s.block_index;
  blockDim = s.block_dim;
  gridDim = s.grid_dim;
  current_block = s.block;
  current_launch = s.launch;
  try {
    (*s.body)();
    s.block->thread_exited();
  } catch (const LaunchAborted&) {
  } catch (const std::exception& e) {
    s.launch->fail(e.what());
  } catch (...) {
    s.launch->fail("unknown exception in a kernel thread");
  }
  return nullptr;
}

// Runs the given blocks (linear block indices) concurrently and waits for all their threads.
inline void run_blocks(Launch& launch, const std::vector<unsigned>& block_ids, dim3 grid, dim3 block,
                       size_t shared_bytes, const std::function<void()>& body) {
  const unsigned threads = block.x * block.y * block.z;
  std::vector<std::unique_ptr<Block>> blocks;
  std::vector<ThreadStart> starts;
  starts.reserve(block_ids.size() * threads);
  for (unsigned id : block_ids) {
    blocks.push_back(std::make_unique<Block>(launch, threads, shared_bytes));
    launch.add_block(blocks.back().get());
    const dim3 index(id % grid.x, id / grid.x % grid.y, id / (grid.x * grid.y));
    for (unsigned t = 0; t < threads; ++t) {
      const dim3 thread(t % block.x, t / block.x % block.y, t / (block.x * block.y));
      starts.push_back(ThreadStart{&launch, blocks.back().get(), thread, index, block, grid, &body});
    }
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  // Kernel threads need little stack; the default (8 MiB each) would reserve gigabytes.
  pthread_attr_setstacksize(&attr, size_t{1} << 20);
  std::vector<pthread_t> handles;
  handles.reserve(starts.size());
  for (ThreadStart& s : starts) {
    pthread_t handle;
    if (pthread_create(&handle, &attr, run_thread, &s) != 0) {
      launch.fail("emulation: could not start a thread (too many threads for this machine)");
      break;
    }
    handles.push_back(handle);
  }
  pthread_attr_destroy(&attr);
  // A thread that never started leaves its block's barrier incomplete: the failure above has
  // already woken the others.
  if (handles.size() != starts.size()) launch.fail("emulation: a launch could not start all its threads");
  for (pthread_t h : handles) pthread_join(h, nullptr);
  launch.remove_blocks();
}

// Runs `body` as a kernel with the given configuration; throws std::runtime_error naming `op`
// if the configuration is invalid or a thread failed.
inline void run_kernel(const char* op, dim3 grid, dim3 block, size_t shared_bytes, size_t shared_limit,
                   bool cooperative, const std::function<void()>& body) {
  auto reject = [&](const std::string& why) {
    throw std::runtime_error(std::string("fastgates ") + op + ": invalid kernel launch (emulation): " + why);
  };
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
    reject("a grid or block dimension is 0");
  }
  if (uint64_t{block.x} * block.y * block.z > 1024 || block.z > 64) reject("more than 1024 threads per block");
  if (grid.y > 65535 || grid.z > 65535) reject("grid.y or grid.z above 65535");
  if (shared_bytes > shared_limit) {
    reject("dynamic shared memory of " + std::to_string(shared_bytes) + " bytes exceeds the limit of " +
           std::to_string(shared_limit));
  }
  Launch state;
  const unsigned blocks = grid.x * grid.y * grid.z;
  if (cooperative) {
    std::vector<unsigned> all(blocks);
    for (unsigned i = 0; i < blocks; ++i) all[i] = i;
    run_blocks(state, all, grid, block, shared_bytes, body);
  } else {
    for (unsigned i = 0; i < blocks && !state.failed(); ++i) run_blocks(state, {i}, grid, block, shared_bytes, body);
  }
  if (state.failed()) throw std::runtime_error(std::string("fastgates ") + op + ": kernel failed (emulation): " + state.message());
}

// Spinning threads give the core away: there are many more emulated threads than cores. A
// failed launch unwinds them here.
inline void spin_pause() {
  if (current_launch != nullptr && current_launch->failed()) throw LaunchAborted{};
  sched_yield();
}

}  // namespace fastgates::emulation

// The CUDA built-in functions, in the namespace the kernels are compiled in (see device.h).
namespace fastgates::emulation::builtins {

inline void __syncthreads() { current_block->sync(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned) { spin_pause(); }
inline unsigned atomicAdd(unsigned* address, unsigned value) {
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}
inline unsigned atomicExch(unsigned* address, unsigned value) {
  return __atomic_exchange_n(address, value, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T __ldcg(const T* address) {
  return *address;
}

}  // namespace fastgates::emulation::builtins
