// Body of one instruction-set build of the CPU kernels. CMakeLists.txt generates one
// translation unit per instruction set that defines FG_CPU_ISA and includes this file, each
// compiled with that instruction set's flags; dispatch.cpp picks one at run time.
#pragma once

#include "cpu/gru_cells.h"
#include "cpu/kernels.h"
#include "cpu/lstm_cells.h"
#include "cpu/matmul.h"
#include "cpu/peak.h"
#include "cpu/recurrence.h"

namespace fastgates::cpu::FG_CPU_ISA {

const char* isa_name() { return FG_STRINGIFY(FG_CPU_ISA); }

// The projected and plain LSTM are separate instantiations: the choice is made once per call.
template <template <typename, bool> class Cell, typename T, class Args, class Run>
void with_projection(const Args& args, Run run) {
  if (args.shape.proj_size > 0) {
    run(Cell<T, true>(args));
  } else {
    run(Cell<T, false>(args));
  }
}

size_t workspace_bytes(Kernel kernel, DType dtype, SequenceShape shape, int /*num_threads*/) {
  auto bytes = [&](auto zero) {
    using T = decltype(zero);
    size_t result = 0;
    switch (kernel) {
      case Kernel::lstm_forward: {
        LstmForward<T> args{};
        args.shape = shape;
        with_projection<LstmForwardCell, T>(args, [&](const auto& cell) { result = forward_workspace_bytes(cell); });
        break;
      }
      case Kernel::lstm_backward: {
        LstmBackward<T> args{};
        args.shape = shape;
        with_projection<LstmBackwardCell, T>(args, [&](const auto& cell) { result = backward_workspace_bytes(cell); });
        break;
      }
      case Kernel::gru_forward: {
        GruForward<T> args{};
        args.shape = shape;
        result = forward_workspace_bytes(GruForwardCell<T>(args));
        break;
      }
      case Kernel::gru_backward: {
        GruBackward<T> args{};
        args.shape = shape;
        result = backward_workspace_bytes(GruBackwardCell<T>(args));
        break;
      }
    }
    return result;
  };
  return dtype == DType::float32 ? bytes(0.0f) : bytes(0.0);
}

template <typename T>
void lstm_forward(const LstmForward<T>& args) {
  with_projection<LstmForwardCell, T>(
      args, [&](const auto& cell) { run_forward(cell, args.layout, args.workspace, args.num_threads); });
}
template <typename T>
void lstm_backward(const LstmBackward<T>& args) {
  with_projection<LstmBackwardCell, T>(
      args, [&](const auto& cell) { run_backward(cell, args.layout, args.workspace, args.num_threads); });
}
template <typename T>
void gru_forward(const GruForward<T>& args) {
  run_forward(GruForwardCell<T>(args), args.layout, args.workspace, args.num_threads);
}
template <typename T>
void gru_backward(const GruBackward<T>& args) {
  run_backward(GruBackwardCell<T>(args), args.layout, args.workspace, args.num_threads);
}

size_t matmul_workspace_bytes(DType dtype, int64_t m, int64_t n, int64_t k, bool transpose_a, int num_threads) {
  auto bytes = [&](auto zero) {
    using T = decltype(zero);
    return matmul_bytes(Matmul<T>{nullptr, nullptr, nullptr, m, n, k, transpose_a, false, nullptr, num_threads});
  };
  return dtype == DType::float32 ? bytes(0.0f) : bytes(0.0);
}
template <typename T>
void matmul(const Matmul<T>& args) {
  run_matmul(args);
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

}  // namespace fastgates::cpu::FG_CPU_ISA
