// The host side of the kernels, shared by both builds: checks a launch configuration against
// the problem and runs a whole sequence with the configured strategy.
#pragma once

#include <stdexcept>
#include <string>

#include "cuda/gru_cells.cuh"
#include "cuda/launch.h"
#include "cuda/lstm_cells.cuh"
#include "cuda/recurrence.cuh"

namespace fastgates::FG_CUDA_NAMESPACE {

// A configuration made for another problem would index out of bounds: reject it.
template <class Cell>
void check_config(const char* op, const cuda::SequenceShape& shape, const cuda::LaunchConfig& c, const void* workspace) {
  const bool ok = shape.steps >= 1 && shape.batch >= 1 && shape.hidden_size >= 1 && c.units_per_block >= 1 &&
                  c.reduction_lanes >= 1 && c.threads == Cell::kGates * c.units_per_block * c.reduction_lanes &&
                  int64_t(c.grid_x) * c.units_per_block >= shape.hidden_size &&
                  int64_t(c.grid_x - 1) * c.units_per_block < shape.hidden_size &&
                  int64_t(c.grid_y) * cuda::kBatchTile >= shape.batch &&
                  int64_t(c.grid_y - 1) * cuda::kBatchTile < shape.batch &&
                  c.threads <= (c.strategy == cuda::Strategy::per_step ? cuda::kMaxPerStepThreads
                                                                        : cuda::kMaxPersistentThreads) &&
                  workspace != nullptr;
  if (!ok) throw std::invalid_argument(std::string("fastgates ") + op + ": launch configuration does not match the problem");
}

template <class Cell, typename T>
void run_forward(const char* op, const typename Cell::template Forward<T>& a, const cuda::LaunchConfig& c,
                 Stream stream) {
  check_config<Cell>(op, a.shape, c, a.workspace);
  const Tiling tiling{c.units_per_block, c.reduction_lanes};
  const dim3 grid(c.grid_x, c.grid_y), block(c.threads);
  if (c.strategy == cuda::Strategy::per_step) {
    for (int64_t t = 0; t < a.shape.steps; ++t) {
      launch(op, forward_step_kernel<Cell, T>, grid, block, c.shared_bytes, false, stream, a, tiling, t);
    }
  } else {
    zero_async(a.workspace, cuda::kBarrierBytes, stream, op);
    launch(op, forward_persistent_kernel<Cell, T>, grid, block, c.shared_bytes, true, stream, a, tiling);
  }
}

template <class Cell, typename T>
void run_backward(const char* op, const typename Cell::template Backward<T>& a, const cuda::LaunchConfig& c,
                  Stream stream) {
  check_config<Cell>(op, a.shape, c, a.workspace);
  const Tiling tiling{c.units_per_block, c.reduction_lanes};
  const dim3 grid(c.grid_x, c.grid_y), block(c.threads);
  if (c.strategy == cuda::Strategy::per_step) {
    for (int64_t t = a.shape.steps - 1; t >= -1; --t) {
      launch(op, backward_step_kernel<Cell, T>, grid, block, c.shared_bytes, false, stream, a, tiling, t);
    }
  } else {
    zero_async(a.workspace, cuda::kBarrierBytes, stream, op);
    launch(op, backward_persistent_kernel<Cell, T>, grid, block, c.shared_bytes, true, stream, a, tiling);
  }
}

}  // namespace fastgates::FG_CUDA_NAMESPACE
