#include "cpu/thread_team.h"

#include <omp.h>

#include <algorithm>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FG_CPU_RELAX() _mm_pause()
#else
#define FG_CPU_RELAX() ((void)0)
#endif

namespace fastgates::cpu {

void SpinBarrier::wait(int* local_sense) {
  const int sense = 1 - *local_sense;
  *local_sense = sense;
  if (waiting_.fetch_add(1, std::memory_order_acq_rel) == num_threads_ - 1) {
    waiting_.store(0, std::memory_order_relaxed);
    sense_.store(sense, std::memory_order_release);
    return;
  }
  for (int spins = 0; sense_.load(std::memory_order_acquire) != sense; ++spins) {
    if (spins < 4096) {
      FG_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

void run_team(int num_threads, TeamJob job, void* context) {
  num_threads = std::clamp(num_threads, 1, max_team_threads());
  SpinBarrier barrier(1);
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
std::atomic<int64_t> multiply_adds_threshold{32 * 1024};
}

int64_t multiply_adds_per_thread() { return multiply_adds_threshold.load(std::memory_order_relaxed); }

int64_t set_multiply_adds_per_thread(int64_t value) { return multiply_adds_threshold.exchange(value); }

}  // namespace fastgates::cpu
