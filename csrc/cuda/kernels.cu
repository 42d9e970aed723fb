// The CUDA kernels compiled by nvcc for the GPU (built only when CMake finds nvcc).
#include "cuda/host.cuh"

namespace fastgates::cuda {

namespace {

// Makes `device` current for the call and restores the caller's device after it.
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* op) {
    check(cudaGetDevice(&previous_), op, "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), op, "cudaSetDevice");
  }
  ~DeviceGuard() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

DeviceProperties device_properties(int device) {
  const char* op = "device_properties";
  int sm_count = 0, shared = 0, cooperative = 0;
  check(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device), op, "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), op,
        "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device), op, "cudaDeviceGetAttribute");
  return {sm_count, static_cast<size_t>(shared), cooperative != 0};
}

template <typename T>
void lstm_forward(const LstmForward<T>& args, const LaunchConfig& config, int device, void* stream) {
  DeviceGuard guard(device, "lstm_forward");
  if (args.w_hr != nullptr) {
    run_forward<ProjectedLstmCell, T>("lstm_forward", args, config, static_cast<Stream>(stream));
  } else {
    run_forward<LstmCell, T>("lstm_forward", args, config, static_cast<Stream>(stream));
  }
}
template <typename T>
void lstm_backward(const LstmBackward<T>& args, const LaunchConfig& config, int device, void* stream) {
  DeviceGuard guard(device, "lstm_backward");
  if (args.w_hr != nullptr) {
    run_backward<ProjectedLstmCell, T>("lstm_backward", args, config, static_cast<Stream>(stream));
  } else {
    run_backward<LstmCell, T>("lstm_backward", args, config, static_cast<Stream>(stream));
  }
}
template <typename T>
void gru_forward(const GruForward<T>& args, const LaunchConfig& config, int device, void* stream) {
  DeviceGuard guard(device, "gru_forward");
  run_forward<GruCell, T>("gru_forward", args, config, static_cast<Stream>(stream));
}
template <typename T>
void gru_backward(const GruBackward<T>& args, const LaunchConfig& config, int device, void* stream) {
  DeviceGuard guard(device, "gru_backward");
  run_backward<GruCell, T>("gru_backward", args, config, static_cast<Stream>(stream));
}

#define FG_INSTANTIATE(T)                                                                       \
  template void lstm_forward<T>(const LstmForward<T>&, const LaunchConfig&, int, void*);        \
  template void lstm_backward<T>(const LstmBackward<T>&, const LaunchConfig&, int, void*);      \
  template void gru_forward<T>(const GruForward<T>&, const LaunchConfig&, int, void*);          \
  template void gru_backward<T>(const GruBackward<T>&, const LaunchConfig&, int, void*);
FG_INSTANTIATE(float)
FG_INSTANTIATE(double)
FG_INSTANTIATE(Half)
FG_INSTANTIATE(BFloat16)
#undef FG_INSTANTIATE

}  // namespace fastgates::cuda
