// The threads of one kernel call, and the spin barrier they meet at between time steps. One
// call is one OpenMP parallel region (not one per step); the steps of a sequence are separated
// by SpinBarrier::wait only. The team is OpenMP's so that it is torch's own: torch (CPU wheels)
// runs its GEMMs on the same libgomp, whose threads would otherwise keep spinning after each
// GEMM on the cores our threads need.
#pragma once

#include <atomic>
#include <cstdint>

namespace fastgates::cpu {

// Sense-reversing barrier for the threads of one call. Spins (with a pause) and falls back to
// yielding, so an oversubscribed machine slows down instead of live-locking.
class SpinBarrier {
 public:
  explicit SpinBarrier(int num_threads) : num_threads_(num_threads), waiting_(0), sense_(0) {}
  // local_sense: one int per thread, zero-initialised, owned by the calling thread.
  void wait(int* local_sense);
  void reset(int num_threads) { num_threads_ = num_threads; }

 private:
  int num_threads_;
  alignas(64) std::atomic<int> waiting_;
  alignas(64) std::atomic<int> sense_;
};

// job(context, thread_index, team_size, barrier) runs on a team of up to num_threads threads
// (the caller is thread 0; num_threads is clamped to [1, max_team_threads()]) and returns when
// all have finished. The team may be smaller than asked for (nested parallelism): the job must
// split its work by team_size. job must not throw.
using TeamJob = void (*)(void* context, int thread_index, int team_size, SpinBarrier& barrier);
void run_team(int num_threads, TeamJob job, void* context);

// The most threads a job gets: the number of hardware threads (spinning on more than that
// would only slow the barrier down).
int max_team_threads();

// Multiply-adds of one time step that make another thread worth its barrier (about 1 µs a
// step) and its wake-up. Tests lower it to run small shapes on several threads; set returns
// the previous value.
int64_t multiply_adds_per_thread();
int64_t set_multiply_adds_per_thread(int64_t value);

}  // namespace fastgates::cpu
