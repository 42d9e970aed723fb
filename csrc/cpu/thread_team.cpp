#include "cpu/thread_team.h"

#include <omp.h>

#include <algorithm>
#include <thread>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FG_CPU_RELAX() _mm_pause()
#else
#define FG_CPU_RELAX() ((void)0)
#endif

namespace fastgates::cpu {

namespace {
int rounds_for(int num_threads) {
  int rounds = 0;
  while ((1 << rounds) < num_threads) ++rounds;
  return rounds;
}
}  // namespace

SpinBarrier::SpinBarrier(int max_threads)
    : num_threads_(max_threads),
      rounds_(rounds_for(max_threads)),
      slots_(static_cast<size_t>(max_threads) * static_cast<size_t>(rounds_)) {}

void SpinBarrier::reset(int num_threads) {
  // Fewer threads need no more rounds, so the slots allocated for max_threads suffice.
  num_threads_ = std::clamp(num_threads, 1, num_threads_);
  rounds_ = rounds_for(num_threads_);
}

void SpinBarrier::wait(int thread, unsigned* epoch) {
  const unsigned e = ++*epoch;
  for (int r = 0; r < rounds_; ++r) {
    slots_[static_cast<size_t>(thread) * rounds_ + r].epoch.store(e, std::memory_order_release);
    const int from = (thread - (1 << r) + num_threads_) % num_threads_;
    const std::atomic<unsigned>& announced = slots_[static_cast<size_t>(from) * rounds_ + r].epoch;
    // The thread waited for can be one barrier ahead (it may leave this barrier and announce
    // the next before this thread has seen it here), never two: e or e + 1 both mean arrived.
    // Unsigned differences keep that test right when the counters wrap.
    for (int spins = 0; announced.load(std::memory_order_acquire) - e > 1u; ++spins) {
      if (spins < 4096) {
        FG_CPU_RELAX();
      } else {
        std::this_thread::yield();
      }
    }
  }
}

void run_team(int num_threads, TeamJob job, void* context) {
  num_threads = std::clamp(num_threads, 1, max_team_threads());
  SpinBarrier barrier(num_threads);
  if (num_threads == 1) {
    job(context, 0, 1, barrier);
    return;
  }
#pragma omp parallel num_threads(num_threads)
  {
#pragma omp single
    barrier.reset(omp_get_num_threads());
    // (the end of `single` is a barrier: every thread sees the team size)
    job(context, omp_get_thread_num(), omp_get_num_threads(), barrier);
  }
}

int max_team_threads() {
  // Asked once: libstdc++ reads /sys/devices/system/cpu/online on every call; a kernel call
  // asked three times, about 8 µs each on this project's VMs (measured at T = 1, H = 8).
  static const int threads = [] {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(std::min(n, 256u));
  }();
  return threads;
}

namespace {
int64_t machine_l2_cache_bytes() {
  static const int64_t bytes = [] {
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long size = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return size > 0 ? static_cast<int64_t>(size) : int64_t{0};
#else
    return int64_t{0};
#endif
  }();
  return bytes;
}

std::atomic<int64_t> l2_cache_override{-1};  // -1: the machine's
std::atomic<int64_t> multiply_adds_threshold{32 * 1024};
}  // namespace

int64_t l2_cache_bytes() {
  const int64_t set = l2_cache_override.load(std::memory_order_relaxed);
  return set >= 0 ? set : machine_l2_cache_bytes();
}

int64_t set_l2_cache_bytes(int64_t bytes) { return l2_cache_override.exchange(bytes < 0 ? -1 : bytes); }

int64_t multiply_adds_per_thread() { return multiply_adds_threshold.load(std::memory_order_relaxed); }

int64_t set_multiply_adds_per_thread(int64_t value) { return multiply_adds_threshold.exchange(value); }

}  // namespace fastgates::cpu
