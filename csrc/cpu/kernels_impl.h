// Body of one instruction-set build of the CPU kernels. CMakeLists.txt generates one
// translation unit per instruction set that defines FG_CPU_ISA and includes this file, each
// compiled with that instruction set's flags; dispatch.cpp picks one at run time.
#pragma once

#include "cpu/gru_cells.h"
#include "cpu/kernels.h"
#include "cpu/lstm_cells.h"
#include "cpu/recurrence.h"

namespace fastgates::cpu::FG_CPU_ISA {

const char* isa_name() { return FG_STRINGIFY(FG_CPU_ISA); }

size_t workspace_bytes(Kernel kernel, DType dtype, SequenceShape shape, int /*num_threads*/) {
  const int64_t H = shape.hidden_size;
  auto bytes = [&](auto zero) {
    using T = decltype(zero);
    switch (kernel) {
      case Kernel::lstm_forward: return recurrence_workspace_bytes<T>(shape, H, shape.input_size, 4, 1);
      case Kernel::lstm_backward: return recurrence_workspace_bytes<T>(shape, 4 * H, 0, 1, 1);
      case Kernel::gru_forward: return recurrence_workspace_bytes<T>(shape, H, shape.input_size, 3, 1);
      case Kernel::gru_backward: return recurrence_workspace_bytes<T>(shape, 3 * H, 0, 1, 1);
    }
    return size_t{0};
  };
  return dtype == DType::float32 ? bytes(0.0f) : bytes(0.0);
}

template <typename T>
void lstm_forward(const LstmForward<T>& args) {
  run_forward(LstmForwardCell<T>(args), args.workspace, args.num_threads);
}
template <typename T>
void lstm_backward(const LstmBackward<T>& args) {
  run_backward(LstmBackwardCell<T>(args), args.workspace, args.num_threads);
}
template <typename T>
void gru_forward(const GruForward<T>& args) {
  run_forward(GruForwardCell<T>(args), args.workspace, args.num_threads);
}
template <typename T>
void gru_backward(const GruBackward<T>& args) {
  run_backward(GruBackwardCell<T>(args), args.workspace, args.num_threads);
}

template void lstm_forward<float>(const LstmForward<float>&);
template void lstm_forward<double>(const LstmForward<double>&);
template void lstm_backward<float>(const LstmBackward<float>&);
template void lstm_backward<double>(const LstmBackward<double>&);
template void gru_forward<float>(const GruForward<float>&);
template void gru_forward<double>(const GruForward<double>&);
template void gru_backward<float>(const GruBackward<float>&);
template void gru_backward<double>(const GruBackward<double>&);

}  // namespace fastgates::cpu::FG_CPU_ISA
