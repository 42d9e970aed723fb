// The host side of the kernels, shared by both builds: checks a launch configuration against
// the problem and runs a whole sequence with the configured strategy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

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
                  workspace != nullptr &&
                  (Cell::kProjected ? shape.proj_size >= 1 && shape.proj_size < shape.hidden_size
                                    : shape.proj_size == 0);
  if (!ok) throw std::invalid_argument(std::string("fastgates ") + op + ": launch configuration does not match the problem");
}

// Writes a host array into device memory, ordered on the stream, by passing it as kernel
// arguments of up to N values each: a launch copies its arguments when it is queued, so the
// host array need not outlive the call (cudaMemcpyAsync would need a pinned buffer that lives
// until the copy has run, or a synchronisation). N = 256: 2 KiB of arguments, within the
// 4 KiB every architecture accepts.
template <int N>
struct Values {
  int64_t v[N];
};

constexpr int kValuesPerLaunch = 256;
constexpr int kWriteThreads = 32;

template <int N>
__global__ void __launch_bounds__(kWriteThreads) write_values_kernel(int64_t* out, Values<N> values, int count) {
  for (int i = static_cast<int>(threadIdx.x); i < count; i += static_cast<int>(blockDim.x)) out[i] = values.v[i];
}

inline void write_table(int64_t* table, const std::vector<int64_t>& values, Stream stream, const char* op) {
  for (size_t first = 0; first < values.size(); first += kValuesPerLaunch) {
    const int count = static_cast<int>(std::min<size_t>(kValuesPerLaunch, values.size() - first));
    Values<kValuesPerLaunch> chunk{};
    std::copy_n(values.data() + first, count, chunk.v);
    launch(op, write_values_kernel<kValuesPerLaunch>, dim3(1), dim3(kWriteThreads), 0, false, stream,
           table + first, chunk, count);
  }
}

// The schedule of a call on the host: the step offsets from the layout's batch sizes (checked:
// the kernels would index out of bounds otherwise), none when padded.
class HostSchedule {
 public:
  HostSchedule(const char* op, const cuda::SequenceShape& shape, const cuda::SequenceLayout& layout)
      : schedule_{nullptr, shape.steps, shape.batch, layout.reverse} {
    if (layout.batch_sizes == nullptr) return;
    offsets_.resize(shape.steps + 1);
    offsets_[0] = 0;
    for (int64_t t = 0; t < shape.steps; ++t) {
      const int64_t rows = layout.batch_sizes[t];
      const bool ok = t == 0 ? rows == shape.batch : rows >= 1 && rows <= layout.batch_sizes[t - 1];
      if (!ok) {
        throw std::invalid_argument(std::string("fastgates ") + op +
                                    ": batch_sizes must start at batch, be at least 1 and non-increasing");
      }
      offsets_[t + 1] = offsets_[t] + rows;
    }
    schedule_.offsets = offsets_.data();
  }
  // schedule_ points into offsets_.
  HostSchedule(const HostSchedule&) = delete;
  HostSchedule& operator=(const HostSchedule&) = delete;

  bool packed() const { return !offsets_.empty(); }
  const Schedule& host() const { return schedule_; }

  // The schedule as the persistent kernels read it: when packed, the offsets go into the
  // workspace's table (kernels.h), written on the stream before the kernel runs.
  Schedule on_device(const cuda::LaunchConfig& c, void* workspace, Stream stream, const char* op) const {
    Schedule device = schedule_;
    if (packed()) {
      auto* bytes = static_cast<unsigned char*>(workspace);
      auto* table = reinterpret_cast<int64_t*>(bytes + cuda::schedule_table_offset(c));
      write_table(table, offsets_, stream, op);
      device.offsets = table;
    }
    return device;
  }

 private:
  Schedule schedule_;
  std::vector<int64_t> offsets_;
};

// Batch tiles that hold `rows` rows: a per-step launch covers only the rows of its step(s).
inline unsigned tiles_for(int64_t rows) {
  return static_cast<unsigned>((rows + cuda::kBatchTile - 1) / cuda::kBatchTile);
}

// Blocks of S units that cover `units` units (per-step launches over the P outputs or columns
// of a projected LSTM need fewer than the grid's H).
inline unsigned blocks_for(int64_t units, const cuda::LaunchConfig& c) {
  return static_cast<unsigned>((units + c.units_per_block - 1) / c.units_per_block);
}

template <class Cell, typename T>
void run_forward(const char* op, const typename Cell::template Forward<T>& a, const cuda::LaunchConfig& c,
                 Stream stream) {
  check_config<Cell>(op, a.shape, c, a.workspace);
  if constexpr (Cell::kProjected) {
    if (a.saved_m == nullptr) throw std::invalid_argument(std::string("fastgates ") + op + ": a projection needs saved_m");
  }
  const HostSchedule schedule(op, a.shape, a.layout);
  const Tiling tiling{c.units_per_block, c.reduction_lanes};
  const dim3 block(c.threads);
  if (c.strategy == cuda::Strategy::per_step) {
    for (int64_t k = 0; k < a.shape.steps; ++k) {
      const StepRows s = schedule.host().step(schedule.host().at(k));
      launch(op, forward_step_kernel<Cell, T>, dim3(c.grid_x, tiles_for(s.rows)), block, c.shared_bytes, false,
             stream, a, tiling, s);
      if constexpr (Cell::kProjected) {
        launch(op, forward_projection_kernel<Cell, T>, dim3(blocks_for(a.shape.proj_size, c), tiles_for(s.rows)),
               block, c.shared_bytes, false, stream, a, tiling, s);
      }
    }
  } else {
    zero_async(a.workspace, cuda::kBarrierBytes, stream, op);
    const Schedule device = schedule.on_device(c, a.workspace, stream, op);
    launch(op, forward_persistent_kernel<Cell, T>, dim3(c.grid_x, c.grid_y), block, c.shared_bytes, true, stream, a,
           tiling, device);
  }
}

template <class Cell, typename T>
void run_backward(const char* op, const typename Cell::template Backward<T>& a, const cuda::LaunchConfig& c,
                  Stream stream) {
  check_config<Cell>(op, a.shape, c, a.workspace);
  if constexpr (Cell::kProjected) {
    if (a.dh == nullptr) throw std::invalid_argument(std::string("fastgates ") + op + ": a projection needs dh");
  }
  const HostSchedule schedule(op, a.shape, a.layout);
  const Tiling tiling{c.units_per_block, c.reduction_lanes};
  const dim3 block(c.threads);
  if (c.strategy == cuda::Strategy::per_step) {
    const int64_t passes = backward_passes(a.shape.steps, a.dh0 != nullptr);
    for (int64_t k = 0; k < passes; ++k) {
      const StepRows s = schedule.host().backward_step(k), later = schedule.host().backward_later(k);
      const unsigned columns = Cell::kProjected ? blocks_for(a.shape.proj_size, c) : c.grid_x;
      const dim3 grid(columns, tiles_for(backward_pass_rows(s, later, a.dh0 != nullptr)));
      launch(op, backward_step_kernel<Cell, T>, grid, block, c.shared_bytes, false, stream, a, tiling, s, later);
      if constexpr (Cell::kProjected) {
        if (s.rows > 0) {
          launch(op, backward_projection_kernel<Cell, T>, dim3(c.grid_x, tiles_for(s.rows)), block, c.shared_bytes,
                 false, stream, a, tiling, s);
        }
      }
    }
  } else {
    zero_async(a.workspace, cuda::kBarrierBytes, stream, op);
    const Schedule device = schedule.on_device(c, a.workspace, stream, op);
    launch(op, backward_persistent_kernel<Cell, T>, dim3(c.grid_x, c.grid_y), block, c.shared_bytes, true, stream, a,
           tiling, device);
  }
}

}  // namespace fastgates::FG_CUDA_NAMESPACE
