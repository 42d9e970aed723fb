// The threads of one kernel call, and the spin barrier they meet at between time steps. One
// call is one OpenMP parallel region (not one per step); the steps of a sequence are separated
// by SpinBarrier::wait only. The team is OpenMP's so that it is torch's own: torch (CPU wheels)
// runs its GEMMs on the same libgomp, whose threads would otherwise keep spinning after each
// GEMM on the cores our threads need.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace fastgates::cpu {

// Dissemination barrier (Hensgen, Finkel and Manber) for the threads of one call: in round r
// of ceil(log2 n) rounds, each thread announces its arrival on a cache line of its own and waits
// for thread (i - 2^r) mod n's announcement. No shared counter and no read-modify-write: with
// two threads it is one round, in which each thread's store and the other's load cross once
// (measured on two cores: 88 ns a wait, against 152 ns for a sense-reversing counter barrier).
// Spins (with a pause) and falls back to yielding, so an oversubscribed machine slows down
// instead of live-locking.
class SpinBarrier {
 public:
  // Room for teams of up to max_threads (reset may lower the team size, not raise it).
  explicit SpinBarrier(int max_threads);
  // thread: the caller's index in the team; epoch: one per thread, zero-initialised, owned by
  // the calling thread (it counts the thread's waits).
  void wait(int thread, unsigned* epoch);
  void reset(int num_threads);

 private:
  struct alignas(64) Slot {
    std::atomic<unsigned> epoch{0};
  };
  int num_threads_ = 1;
  int rounds_ = 0;
  std::vector<Slot> slots_;  // [thread][round]: the epoch each thread last announced per round
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

// Bytes of one core's L2 cache (glibc's sysconf, from cpuid, asked once per process), or 0
// where it is not known; or the size set_l2_cache_bytes gave.
int64_t l2_cache_bytes();
// The L2 size the kernels plan their chunks and panel groups for (tests, and trying another
// machine's rules): 0 as if unknown, negative for the machine's own again. Results do not
// depend on it. Returns the previous setting (-1: the machine's).
int64_t set_l2_cache_bytes(int64_t bytes);

// Multiply-adds of one time step that make another thread worth its barrier (about 1 µs a
// step) and its wake-up. Tests lower it to run small shapes on several threads; set returns
// the previous value.
int64_t multiply_adds_per_thread();
int64_t set_multiply_adds_per_thread(int64_t value);

}  // namespace fastgates::cpu
