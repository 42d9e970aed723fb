#include "cpu/thread_team.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

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

namespace {

class Team {
 public:
  void run(int num_threads, void (*job)(void*, int), void* context) {
    std::lock_guard<std::mutex> one_job_at_a_time(run_mutex_);
    ensure_workers(num_threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      context_ = context;
      participants_ = num_threads - 1;
      remaining_ = num_threads - 1;
      ++generation_;
      published_.store(generation_, std::memory_order_release);
    }
    start_.notify_all();
    job(context, 0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return remaining_ == 0; });
  }

 private:
  void ensure_workers(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      int index = static_cast<int>(workers_.size()) + 1;
      uint64_t generation;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        generation = generation_;
      }
      // The worker starts from the generation before the job it is created for, so it cannot
      // miss that job however late the thread starts.
      workers_.emplace_back([this, index, generation] { work(index, generation); });
      workers_.back().detach();
    }
  }

  void work(int index, uint64_t seen) {
    for (;;) {
      void (*job)(void*, int);
      void* context;
      // Spin a little before sleeping: a layer's calls come back to back (forward, then
      // backward; one layer after another) and waking a sleeping thread costs far more.
      for (int spins = 0; spins < kSpinsBeforeSleep && published_.load(std::memory_order_acquire) == seen; ++spins) {
        FG_CPU_RELAX();
      }
      {
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index > participants_) continue;
        job = job_;
        context = context_;
      }
      job(context, index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--remaining_ == 0) done_.notify_one();
    }
  }

  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  std::vector<std::thread> workers_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> published_{0};  // generation_, readable without the mutex
  static constexpr int kSpinsBeforeSleep = 2000;
  int participants_ = 0;
  int remaining_ = 0;
  void (*job_)(void*, int) = nullptr;
  void* context_ = nullptr;
};

// The team lives for the whole process (never destroyed: detached workers may still wait on
// it at exit). A forked child has none of the parent's threads, so it starts a new team.
Team* team = nullptr;
std::once_flag team_once;

void start_new_team_in_child() { team = new Team(); }

Team& the_team() {
  std::call_once(team_once, [] {
    team = new Team();
    pthread_atfork(nullptr, nullptr, start_new_team_in_child);
  });
  return *team;
}

}  // namespace

namespace {
std::atomic<int64_t> multiply_adds_threshold{32 * 1024};
}

int64_t multiply_adds_per_thread() { return multiply_adds_threshold.load(std::memory_order_relaxed); }

int64_t set_multiply_adds_per_thread(int64_t value) { return multiply_adds_threshold.exchange(value); }

int max_team_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min(n, 256u));
}

void run_team(int num_threads, void (*job)(void*, int), void* context) {
  num_threads = std::clamp(num_threads, 1, max_team_threads());
  if (num_threads == 1) {
    job(context, 0);
    return;
  }
  the_team().run(num_threads, job, context);
}

}  // namespace fastgates::cpu
