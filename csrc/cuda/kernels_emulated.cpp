// The CUDA kernels compiled by the host compiler with the emulation (emulation.h): the same
// sources as kernels.cu, run on the CPU by the tests.
#include "cuda/host.cuh"

namespace fastgates::cuda_emulated {

cuda::DeviceProperties device_properties() { return {8, 99 * 1024, true}; }

template <typename T>
void lstm_forward(const cuda::LstmForward<T>& args, const LaunchConfig& config) {
  if (args.w_hr != nullptr) {
    run_forward<ProjectedLstmCell, T>("lstm_forward", args, config, Stream{});
  } else {
    run_forward<LstmCell, T>("lstm_forward", args, config, Stream{});
  }
}
template <typename T>
void lstm_backward(const cuda::LstmBackward<T>& args, const LaunchConfig& config) {
  if (args.w_hr != nullptr) {
    run_backward<ProjectedLstmCell, T>("lstm_backward", args, config, Stream{});
  } else {
    run_backward<LstmCell, T>("lstm_backward", args, config, Stream{});
  }
}
template <typename T>
void gru_forward(const cuda::GruForward<T>& args, const LaunchConfig& config) {
  run_forward<GruCell, T>("gru_forward", args, config, Stream{});
}
template <typename T>
void gru_backward(const cuda::GruBackward<T>& args, const LaunchConfig& config) {
  run_backward<GruCell, T>("gru_backward", args, config, Stream{});
}

#define FG_INSTANTIATE(T)                                                                  \
  template void lstm_forward<T>(const cuda::LstmForward<T>&, const LaunchConfig&);         \
  template void lstm_backward<T>(const cuda::LstmBackward<T>&, const LaunchConfig&);       \
  template void gru_forward<T>(const cuda::GruForward<T>&, const LaunchConfig&);           \
  template void gru_backward<T>(const cuda::GruBackward<T>&, const LaunchConfig&);
FG_INSTANTIATE(float)
FG_INSTANTIATE(double)
FG_INSTANTIATE(cuda::Half)
FG_INSTANTIATE(cuda::BFloat16)
#undef FG_INSTANTIATE

}  // namespace fastgates::cuda_emulated
