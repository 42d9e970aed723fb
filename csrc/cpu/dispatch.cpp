// Picks the instruction-set build of the CPU kernels (see kernels_impl.h) once per process:
// the widest one this processor supports, unless set_cpu_isa chose another.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/kernels.h"
#include "cpu/thread_team.h"

#define FG_DECLARE_ISA(isa)                                                         \
  namespace fastgates::cpu::isa {                                                   \
  const char* isa_name();                                                           \
  int64_t multiply_add_rounds(int64_t, float*);                                     \
  size_t workspace_bytes(Kernel, DType, SequenceShape, int);                        \
  template <typename T> void lstm_forward(const LstmForward<T>&);                   \
  template <typename T> void lstm_backward(const LstmBackward<T>&);                 \
  template <typename T> void gru_forward(const GruForward<T>&);                     \
  template <typename T> void gru_backward(const GruBackward<T>&);                   \
  size_t matmul_workspace_bytes(DType, int64_t, int64_t, int64_t, bool, int);       \
  template <typename T> void matmul(const Matmul<T>&);                              \
  extern template void matmul<float>(const Matmul<float>&);                         \
  extern template void matmul<double>(const Matmul<double>&);                       \
  extern template void lstm_forward<float>(const LstmForward<float>&);              \
  extern template void lstm_forward<double>(const LstmForward<double>&);            \
  extern template void lstm_backward<float>(const LstmBackward<float>&);            \
  extern template void lstm_backward<double>(const LstmBackward<double>&);          \
  extern template void gru_forward<float>(const GruForward<float>&);                \
  extern template void gru_forward<double>(const GruForward<double>&);              \
  extern template void gru_backward<float>(const GruBackward<float>&);              \
  extern template void gru_backward<double>(const GruBackward<double>&);            \
  }

FG_DECLARE_ISA(generic)
FG_DECLARE_ISA(avx2)
FG_DECLARE_ISA(avx512)
FG_DECLARE_ISA(avx512_layout)

namespace fastgates::cpu {
namespace {

enum class Isa { generic, avx2, avx512, avx512_layout };

bool supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2:
    case Isa::avx512_layout: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
#endif
  return isa == Isa::generic;
}

Isa best_isa() {
  if (supported(Isa::avx512)) return Isa::avx512;
  if (supported(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

std::atomic<Isa>& current() {
  static std::atomic<Isa> isa{best_isa()};
  return isa;
}

template <class Generic, class Avx2, class Avx512, class Avx512Layout>
auto call(Generic generic, Avx2 avx2, Avx512 avx512, Avx512Layout avx512_layout) {
  switch (current().load(std::memory_order_relaxed)) {
    case Isa::avx512: return avx512();
    case Isa::avx512_layout: return avx512_layout();
    case Isa::avx2: return avx2();
    default: return generic();
  }
}

}  // namespace

#define FG_DISPATCH(fn, ...) \
  call([&] { return generic::fn(__VA_ARGS__); }, [&] { return avx2::fn(__VA_ARGS__); },    \
       [&] { return avx512::fn(__VA_ARGS__); }, [&] { return avx512_layout::fn(__VA_ARGS__); })

size_t workspace_bytes(Kernel kernel, DType dtype, SequenceShape shape, int num_threads) {
  return FG_DISPATCH(workspace_bytes, kernel, dtype, shape, num_threads);
}
template <typename T> void lstm_forward(const LstmForward<T>& a) { FG_DISPATCH(lstm_forward<T>, a); }
template <typename T> void lstm_backward(const LstmBackward<T>& a) { FG_DISPATCH(lstm_backward<T>, a); }
template <typename T> void gru_forward(const GruForward<T>& a) { FG_DISPATCH(gru_forward<T>, a); }
template <typename T> void gru_backward(const GruBackward<T>& a) { FG_DISPATCH(gru_backward<T>, a); }
template <typename T> void matmul(const Matmul<T>& a) { FG_DISPATCH(matmul<T>, a); }

size_t matmul_workspace_bytes(DType dtype, int64_t m, int64_t n, int64_t k, bool transpose_a, int num_threads) {
  return FG_DISPATCH(matmul_workspace_bytes, dtype, m, n, k, transpose_a, num_threads);
}

template void lstm_forward<float>(const LstmForward<float>&);
template void lstm_forward<double>(const LstmForward<double>&);
template void lstm_backward<float>(const LstmBackward<float>&);
template void lstm_backward<double>(const LstmBackward<double>&);
template void gru_forward<float>(const GruForward<float>&);
template void gru_forward<double>(const GruForward<double>&);
template void gru_backward<float>(const GruBackward<float>&);
template void gru_backward<double>(const GruBackward<double>&);
template void matmul<float>(const Matmul<float>&);
template void matmul<double>(const Matmul<double>&);

const char* cpu_isa() { return FG_DISPATCH(isa_name); }

void set_cpu_isa(const std::string& name) {
  Isa isa;
  if (name == "generic") isa = Isa::generic;
  else if (name == "avx2") isa = Isa::avx2;
  else if (name == "avx512") isa = Isa::avx512;
  else if (name == "avx512_layout") isa = Isa::avx512_layout;
  else throw std::invalid_argument("unknown instruction set '" + name + "'; expected generic, avx2, avx512 or avx512_layout");
  if (!supported(isa)) throw std::invalid_argument("this processor does not support " + name);
  current().store(isa);
}

namespace {

struct PeakRun {
  int64_t rounds;
  std::atomic<int64_t> flops{0};
  std::atomic<float> sink{0};  // the loops' results, kept so that they are computed
};

void peak_job(void* context, int thread, int, SpinBarrier& barrier) {
  auto* run = static_cast<PeakRun*>(context);
  unsigned epoch = 0;
  barrier.wait(thread, &epoch);  // start together
  float sink = 0;
  const int64_t flops = FG_DISPATCH(multiply_add_rounds, run->rounds, &sink);
  run->flops.fetch_add(flops, std::memory_order_relaxed);
  run->sink.store(sink, std::memory_order_relaxed);
}

}  // namespace

double peak_gflops(int num_threads, double seconds) {
  using Clock = std::chrono::steady_clock;
  double best = 0;
  int64_t rounds = 1 << 16;
  for (int attempt = 0; attempt < 3;) {
    PeakRun run;
    run.rounds = rounds;
    const Clock::time_point start = Clock::now();
    run_team(num_threads, peak_job, &run);
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (elapsed < seconds / 3 && rounds < (int64_t{1} << 40)) {
      rounds *= 2;  // too short to time: calibrate first
      continue;
    }
    best = std::max(best, static_cast<double>(run.flops.load()) / elapsed * 1e-9);
    ++attempt;
  }
  return best;
}

std::string supported_cpu_isas() {
  std::string names = "generic";
  if (supported(Isa::avx2)) names += ",avx2";
  if (supported(Isa::avx512)) names += ",avx512";
  if (supported(Isa::avx512_layout)) names += ",avx512_layout";
  return names;
}

}  // namespace fastgates::cpu
