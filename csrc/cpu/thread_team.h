// A persistent team of worker threads for the CPU kernels, and the spin barrier they meet at
// between time steps. One kernel call is one job: the team is woken once per call (not per
// step), and the steps of a sequence are separated by SpinBarrier::wait only.
#pragma once

#include <atomic>
#include <cstdint>

namespace fastgates::cpu {

// Sense-reversing barrier for the threads of one job. Spins (with a pause) and falls back to
// yielding, so an oversubscribed machine slows down instead of live-locking.
class SpinBarrier {
 public:
  explicit SpinBarrier(int num_threads) : num_threads_(num_threads), waiting_(0), sense_(0) {}
  // local_sense: one int per thread, zero-initialised, owned by the calling thread.
  void wait(int* local_sense);

 private:
  const int num_threads_;
  alignas(64) std::atomic<int> waiting_;
  alignas(64) std::atomic<int> sense_;
};

// job(context, thread_index) runs on num_threads threads (the caller is thread 0) and returns
// when all have finished. num_threads is clamped to [1, max_team_threads()]. Jobs from
// concurrent callers run one after the other. job must not throw.
void run_team(int num_threads, void (*job)(void* context, int thread_index), void* context);

// Multiply-adds of one time step that make another thread worth its barrier (about 1 µs a
// step) and its wake-up (tens of µs a call). Tests lower it to run small shapes on several
// threads; set returns the previous value.
int64_t multiply_adds_per_thread();
int64_t set_multiply_adds_per_thread(int64_t value);

// The most threads a job gets: the number of hardware threads (spinning on more than that
// would only slow the barrier down).
int max_team_threads();

}  // namespace fastgates::cpu
