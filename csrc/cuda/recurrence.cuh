// The two recurrent strategies as templates over a cell policy (lstm_cells.cuh, gru_cells.cuh).
// Compiled by nvcc for the GPU and by the host compiler with the emulation (device.h).
//
// Work split (both strategies, forward and backward): blockIdx.x owns S = tiling.units hidden
// units, blockIdx.y a tile of kBatchTile batch rows. A block has G·S·R threads.
//   Forward: thread (row, lane) with row = (gate g, unit) computes the dot product of that row
//   of W_hh with h_{t-1} over k ≡ lane (mod R), for each batch row of the tile (kBatchTile
//   accumulators in registers); the partial sums meet in shared memory and one thread per
//   (batch row, unit) adds them in a fixed order and applies the cell to all G gates.
//   Backward: thread (unit, lane) computes the unit's column of W_hh times the dgates of the
//   step visited before (the next one in the direction of travel) over the G·H rows ≡ lane
//   (mod G·R); then one thread per (batch row, unit) applies the cell's backward, whose dgates
//   the next pass's product reads.
// Time: the host code (per step) or the persistent kernel's loop walks the steps in the order
// of the Schedule (forward, or reversed) and hands each step's rows to the step functions as a
// StepRows; packed steps shrink the rows and grid tiles past them do nothing.
// LSTM projections (kernels.h) add a second phase to each step, projection_step, which
// splits its outputs and lanes as the backward pass does; W_hh is then [G·H, K] with K = P.
// Shared memory (dynamic only): [persistent: the block's weight slice, element type, padded
// to 16 bytes][partial sums kBatchTile × G·S × R, compute type]. Every sum is taken in the
// same order whichever the strategy (for the same R), and the results are deterministic.
#pragma once

#include <cstdint>

#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/numeric.cuh"

namespace fastgates::FG_CUDA_NAMESPACE {

struct Tiling {
  int units;  // S: hidden units per block
  int lanes;  // R: threads per gate row (forward); G·R threads per unit column (backward)
};

// One step as a kernel sees it: where its rows are and which of them continue or hand on a
// state (the CPU kernels' StepSchedule, csrc/cpu/recurrence.h). A step with no rows (rows 0)
// stands for "no step": before the first step the backward visits, or after the last.
struct StepRows {
  int64_t offset;     // first row of step t in the [N, ·] arrays
  int64_t rows;       // rows(t); 0 for no step
  int64_t before;     // first row of the step whose state rows [0, continued) continue
  int64_t continued;  // rows [0, continued) continue a state; the others start from h0/c0
  int64_t carried;    // rows [0, carried) hand their state on; the others end at t (h_n, c_n)
};

// The order of the steps and their rows (kernels.h: SequenceLayout). `offsets`: the T + 1 step
// offsets (host memory in host code, the workspace's table in a kernel), or null when padded.
struct Schedule {
  const int64_t* offsets;
  int64_t steps, batch;
  bool reverse;

  __host__ __device__ __forceinline__ int64_t offset(int64_t t) const { return offsets ? offsets[t] : t * batch; }
  __host__ __device__ __forceinline__ int64_t rows(int64_t t) const { return offset(t + 1) - offset(t); }
  // The k-th step the forward pass runs.
  __host__ __device__ __forceinline__ int64_t at(int64_t k) const { return reverse ? steps - 1 - k : k; }
  // The step whose state step t continues (−1: none), and the one that continues step t's.
  __host__ __device__ __forceinline__ int64_t before(int64_t t) const { return within(reverse ? t + 1 : t - 1); }
  __host__ __device__ __forceinline__ int64_t after(int64_t t) const { return within(reverse ? t - 1 : t + 1); }
  __host__ __device__ __forceinline__ int64_t within(int64_t t) const { return t >= 0 && t < steps ? t : -1; }

  // Step t (−1: no step).
  __host__ __device__ __forceinline__ StepRows step(int64_t t) const {
    if (t < 0) return StepRows{0, 0, 0, 0, 0};
    const int64_t rows_t = rows(t), b = before(t), a = after(t);
    const int64_t continued = b < 0 ? 0 : (rows(b) < rows_t ? rows(b) : rows_t);
    const int64_t carried = a < 0 ? 0 : (rows(a) < rows_t ? rows(a) : rows_t);
    return StepRows{offset(t), rows_t, b < 0 ? 0 : offset(b), continued, carried};
  }
  // The backward's pass k (0..T): step at(T−1−k) (none for k = T) and the step visited before
  // it, whose dgates feed the recurrent product (none for k = 0).
  __host__ __device__ __forceinline__ StepRows backward_step(int64_t k) const {
    return step(k < steps ? at(steps - 1 - k) : -1);
  }
  __host__ __device__ __forceinline__ StepRows backward_later(int64_t k) const {
    return step(k > 0 ? at(steps - k) : -1);
  }
};

// The backward's passes: one per step, and with dh0 (wanted) one more for the dh0 of the
// sequences that started at the step visited last.
__host__ __device__ __forceinline__ int64_t backward_passes(int64_t steps, bool wants_dh0) {
  return wants_dh0 ? steps + 1 : steps;
}
// The batch rows of a backward pass: step s's, and with dh0 those of `later` that started there.
__host__ __device__ __forceinline__ int64_t backward_pass_rows(const StepRows& s, const StepRows& later,
                                                               bool wants_dh0) {
  return wants_dh0 && later.rows > s.rows ? later.rows : s.rows;
}

// The workspace (kernels.h): the grid barrier's two counters, then the running state [B, H].
__device__ __forceinline__ unsigned* barrier_counters(void* workspace) { return static_cast<unsigned*>(workspace); }
template <typename Acc>
__device__ __forceinline__ Acc* running_state(void* workspace) {
  return reinterpret_cast<Acc*>(static_cast<unsigned char*>(workspace) + cuda::kBarrierBytes);
}

// The partial sums after a persistent block's weight slice of `elements` elements of T.
template <typename T, typename Acc>
__device__ __forceinline__ Acc* partials_after(T* slice, int64_t elements) {
  const int64_t bytes = (elements * int64_t(sizeof(T)) + 15) / 16 * 16;
  return reinterpret_cast<Acc*>(reinterpret_cast<unsigned char*>(slice) + bytes);
}

// K: the width of h, the columns of W_hh (P with an LSTM projection, else H).
__device__ __forceinline__ int64_t state_width(const cuda::SequenceShape& shape) {
  return shape.proj_size > 0 ? shape.proj_size : shape.hidden_size;
}

// Where a block reads W_hh [G·H, K] from: global memory (per step) or its slice in shared memory.
// Forward: (row of W_hh, column k, the row's index in the block's slice).
template <typename T>
struct GlobalRows {
  const T* w;
  int64_t width;  // K
  __device__ __forceinline__ T operator()(int64_t row, int64_t k, int) const { return w[row * width + k]; }
};
template <typename T>
struct SharedRows {
  const T* slice;  // [G·S, K]
  int64_t width;
  __device__ __forceinline__ T operator()(int64_t, int64_t k, int local_row) const {
    return slice[local_row * width + k];
  }
};
// Backward: (row of W_hh, column j, the column's index in the block's slice).
template <typename T>
struct GlobalColumns {
  const T* w;
  int64_t width;  // K
  __device__ __forceinline__ T operator()(int64_t row, int64_t j, int) const { return w[row * width + j]; }
};
template <typename T>
struct SharedColumns {
  const T* slice;  // [G·H, S]
  int units;
  __device__ __forceinline__ T operator()(int64_t row, int64_t, int local_unit) const {
    return slice[row * units + local_unit];
  }
};

// Row `row` of the backward's dy, `width` wide: the one row every row shares with dy_one_row.
template <class Args>
__device__ __forceinline__ auto dy_row(const Args& a, int64_t row, int64_t width) {
  return a.dy + (a.dy_one_row ? 0 : row * width);
}

// The h_{t-1} of row b of step s: its row of the step before in y, or row b of h0.
template <class Args>
__device__ __forceinline__ auto previous_h(const Args& a, const StepRows& s, int64_t b) {
  const int64_t K = state_width(a.shape);
  return b < s.continued ? a.y + (s.before + b) * K : a.h0 + b * K;
}

// One forward step of the block's units and batch tile.
template <class Cell, typename T, class Weights>
__device__ __forceinline__ void forward_step(const typename Cell::template Forward<T>& a, const StepRows& s,
                                             Tiling tiling, const Weights& weights,
                                             typename Numeric<T>::Acc* partials) {
  using N = Numeric<T>;
  using Acc = typename N::Acc;
  constexpr int G = Cell::kGates;
  const int64_t H = a.shape.hidden_size, K = state_width(a.shape);
  const int64_t B = s.rows;
  const int S = tiling.units, R = tiling.lanes, rows = G * S;
  const int lane = static_cast<int>(threadIdx.x) % R;
  const int local_row = static_cast<int>(threadIdx.x) / R;
  const int64_t j = int64_t(blockIdx.x) * S + local_row % S;
  const int64_t b0 = int64_t(blockIdx.y) * cuda::kBatchTile;
  // A tile past the step's rows has nothing to do (the same for the whole block).
  if (b0 >= B) return;
  Acc acc[cuda::kBatchTile] = {};
  if (j < H) {
    // Rows past the step's rows repeat its last row; their sums are dropped below.
    const T* h_row[cuda::kBatchTile];
    for (int bb = 0; bb < cuda::kBatchTile; ++bb) h_row[bb] = previous_h(a, s, b0 + bb < B ? b0 + bb : B - 1);
    const int64_t w_row = int64_t(local_row / S) * H + j;
    for (int64_t k = lane; k < K; k += R) {
      const Acc w = N::load(weights(w_row, k, local_row));
      // h_{t-1} was written by other blocks during this launch (persistent strategy).
      for (int bb = 0; bb < cuda::kBatchTile; ++bb) acc[bb] += w * N::load(N::load_coherent(h_row[bb] + k));
    }
  }
  for (int bb = 0; bb < cuda::kBatchTile; ++bb) partials[(bb * rows + local_row) * R + lane] = acc[bb];
  __syncthreads();
  for (int idx = static_cast<int>(threadIdx.x); idx < cuda::kBatchTile * S; idx += static_cast<int>(blockDim.x)) {
    const int bb = idx / S, unit = idx % S;
    const int64_t b = b0 + bb, jj = int64_t(blockIdx.x) * S + unit;
    if (b >= B || jj >= H) continue;
    Acc recurrent[G];
    for (int g = 0; g < G; ++g) {
      const Acc* p = partials + (bb * rows + g * S + unit) * R;
      Acc sum = 0;
      for (int r = 0; r < R; ++r) sum += p[r];
      recurrent[g] = sum;
    }
    Cell::forward_cell(a, s, b, jj, recurrent);
  }
}

// One pass of the backward: the cell's backward of step s (none after the last pass) and
// dh0 of the rows that started at step `later`, the step visited before. Both need
// dgates_later W_hh: rows [0, s.carried) as the recurrent part of their dh_t, rows
// [s.carried, later.rows) (which started at `later`) as their dh0. Without dh0 (null: not
// wanted) the product covers only the rows of both steps, and a pass with no rows of step s
// has nothing to do. The block's units are columns j < K of W_hh (with a projection, the
// cell's backward is phase A: it writes dh).
template <class Cell, typename T, class Weights>
__device__ __forceinline__ void backward_step(const typename Cell::template Backward<T>& a, const StepRows& s,
                                              const StepRows& later, Tiling tiling, const Weights& weights,
                                              typename Numeric<T>::Acc* partials) {
  using N = Numeric<T>;
  using Acc = typename N::Acc;
  constexpr int G = Cell::kGates;
  const int64_t H = a.shape.hidden_size, K = state_width(a.shape);
  const int64_t B = backward_pass_rows(s, later, a.dh0 != nullptr);
  // Rows of `later` whose product is used: all of them, or only those that continue into s.
  const int64_t product_rows = later.rows < B ? later.rows : B;
  const int S = tiling.units, L = G * tiling.lanes;
  const int unit = static_cast<int>(threadIdx.x) % S;
  const int lane = static_cast<int>(threadIdx.x) / S;
  const int64_t j = int64_t(blockIdx.x) * S + unit;
  const int64_t b0 = int64_t(blockIdx.y) * cuda::kBatchTile;
  // A tile past the pass's rows has nothing to do (the same for the whole block).
  if (b0 >= B) return;
  Acc acc[cuda::kBatchTile] = {};
  if (product_rows > 0 && j < K) {
    const T* d = Cell::recurrent_gradient(a) + later.offset * G * H;
    const T* d_row[cuda::kBatchTile];
    for (int bb = 0; bb < cuda::kBatchTile; ++bb) {
      d_row[bb] = d + (b0 + bb < product_rows ? b0 + bb : product_rows - 1) * G * H;
    }
    for (int64_t row = lane; row < G * H; row += L) {
      const Acc w = N::load(weights(row, j, unit));
      for (int bb = 0; bb < cuda::kBatchTile; ++bb) acc[bb] += w * N::load(N::load_coherent(d_row[bb] + row));
    }
  }
  for (int bb = 0; bb < cuda::kBatchTile; ++bb) partials[(bb * S + unit) * L + lane] = acc[bb];
  __syncthreads();
  for (int idx = static_cast<int>(threadIdx.x); idx < cuda::kBatchTile * S; idx += static_cast<int>(blockDim.x)) {
    const int bb = idx / S, u = idx % S;
    const int64_t b = b0 + bb, jj = int64_t(blockIdx.x) * S + u;
    if (b >= B || jj >= K) continue;
    const Acc* p = partials + (bb * S + u) * L;
    Acc sum = 0;
    for (int r = 0; r < L; ++r) sum += p[r];
    // Rows past product_rows summed a repeated row: they end at step s and get no recurrent part.
    if (b < s.rows) {
      Cell::backward_cell(a, s, b, jj, b < later.rows ? sum : Acc(0));
    } else {
      Cell::finish_backward(a, b, jj, sum);
    }
  }
}

// One projection phase of a step (kernels.h: LSTM with a projection), laid out like the
// backward pass: the block's S outputs u < units, its tile of batch rows b < rows, L = G·R
// lanes per output. out[b, u] = Σ_k weight(u, k) · input(b)[k] over k < depth, summed in a
// fixed order; then finish(b, u, out[b, u]).
template <class Cell, typename T, class Weight, class Input, class Finish>
__device__ __forceinline__ void projection_step(int64_t rows, int64_t units, int64_t depth, Tiling tiling,
                                                const Weight& weight, const Input& input, const Finish& finish,
                                                typename Numeric<T>::Acc* partials) {
  using N = Numeric<T>;
  using Acc = typename N::Acc;
  const int S = tiling.units, L = Cell::kGates * tiling.lanes;
  const int unit = static_cast<int>(threadIdx.x) % S;
  const int lane = static_cast<int>(threadIdx.x) / S;
  const int64_t u = int64_t(blockIdx.x) * S + unit;
  const int64_t b0 = int64_t(blockIdx.y) * cuda::kBatchTile;
  if (b0 >= rows || int64_t(blockIdx.x) * S >= units) return;  // the same for the whole block
  Acc acc[cuda::kBatchTile] = {};
  if (u < units) {
    const T* in[cuda::kBatchTile];
    for (int bb = 0; bb < cuda::kBatchTile; ++bb) in[bb] = input(b0 + bb < rows ? b0 + bb : rows - 1);
    for (int64_t k = lane; k < depth; k += L) {
      const Acc w = N::load(weight(u, k));
      // The inputs were written by other blocks during this launch (persistent strategy).
      for (int bb = 0; bb < cuda::kBatchTile; ++bb) acc[bb] += w * N::load(N::load_coherent(in[bb] + k));
    }
  }
  for (int bb = 0; bb < cuda::kBatchTile; ++bb) partials[(bb * S + unit) * L + lane] = acc[bb];
  __syncthreads();
  for (int idx = static_cast<int>(threadIdx.x); idx < cuda::kBatchTile * S; idx += static_cast<int>(blockDim.x)) {
    const int bb = idx / S, v = idx % S;
    const int64_t b = b0 + bb, uu = int64_t(blockIdx.x) * S + v;
    if (b >= rows || uu >= units) continue;
    const Acc* p = partials + (bb * S + v) * L;
    Acc sum = 0;
    for (int r = 0; r < L; ++r) sum += p[r];
    finish(b, uu, sum);
  }
}

// All blocks of a cooperative launch meet here. counter[0]: blocks arrived in this round;
// counter[1]: rounds completed. Both zero before the launch. The fences make the writes of
// every block before the barrier visible to every block after it.
__device__ __forceinline__ void grid_barrier(unsigned* counter) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned blocks = gridDim.x * gridDim.y;
    const unsigned round = atomicAdd(counter + 1, 0u);
    __threadfence();
    if (atomicAdd(counter, 1u) == blocks - 1) {
      atomicExch(counter, 0u);
      __threadfence();
      atomicAdd(counter + 1, 1u);
    } else {
      while (atomicAdd(counter + 1, 0u) == round) __nanosleep(32);
    }
    __threadfence();
  }
  __syncthreads();
}

template <class Cell, typename T>
__global__ void __launch_bounds__(cuda::kMaxPerStepThreads)
    forward_step_kernel(typename Cell::template Forward<T> a, Tiling tiling, StepRows s) {
  FG_DYNAMIC_SHARED(shared);
  forward_step<Cell, T>(a, s, tiling, GlobalRows<T>{a.w_hh, state_width(a.shape)},
                        reinterpret_cast<typename Numeric<T>::Acc*>(shared));
}

template <class Cell, typename T>
__global__ void __launch_bounds__(cuda::kMaxPerStepThreads)
    backward_step_kernel(typename Cell::template Backward<T> a, Tiling tiling, StepRows s, StepRows later) {
  FG_DYNAMIC_SHARED(shared);
  backward_step<Cell, T>(a, s, later, tiling, GlobalColumns<T>{a.w_hh, state_width(a.shape)},
                         reinterpret_cast<typename Numeric<T>::Acc*>(shared));
}

// Phase B of a step with an LSTM projection (kernels.h), one launch each (per-step strategy).
template <class Cell, typename T>
__global__ void __launch_bounds__(cuda::kMaxPerStepThreads)
    forward_projection_kernel(typename Cell::template Forward<T> a, Tiling tiling, StepRows s) {
  FG_DYNAMIC_SHARED(shared);
  Cell::forward_projection(a, s, tiling, reinterpret_cast<typename Numeric<T>::Acc*>(shared));
}

template <class Cell, typename T>
__global__ void __launch_bounds__(cuda::kMaxPerStepThreads)
    backward_projection_kernel(typename Cell::template Backward<T> a, Tiling tiling, StepRows s) {
  FG_DYNAMIC_SHARED(shared);
  Cell::backward_projection(a, s, tiling, reinterpret_cast<typename Numeric<T>::Acc*>(shared));
}

// Launch bounds (1024 threads, 1 block per SM, as the persistent grid has): up to 64 registers
// per thread. Without the block count ptxas aims lower and spills (16-bit LSTM backward).
template <class Cell, typename T>
__global__ void __launch_bounds__(cuda::kMaxPersistentThreads, 1)
    forward_persistent_kernel(typename Cell::template Forward<T> a, Tiling tiling, Schedule schedule) {
  constexpr int G = Cell::kGates;
  FG_DYNAMIC_SHARED(shared);
  const int64_t H = a.shape.hidden_size, K = state_width(a.shape);
  const int S = tiling.units;
  T* slice = reinterpret_cast<T*>(shared);  // [G·S, K]: rows g·H + j of W_hh for the block's units j
  const int64_t slice_size = int64_t(G) * S * K;
  for (int64_t e = threadIdx.x; e < slice_size; e += blockDim.x) {
    const int64_t local_row = e / K, k = e % K;
    const int64_t j = int64_t(blockIdx.x) * S + local_row % S;
    slice[e] = j < H ? a.w_hh[((local_row / S) * H + j) * K + k] : T{};
  }
  __syncthreads();
  unsigned* barrier = barrier_counters(a.workspace);
  auto* partials = partials_after<T, typename Numeric<T>::Acc>(slice, slice_size);
  for (int64_t k = 0; k < a.shape.steps; ++k) {
    if (k > 0) grid_barrier(barrier);
    const StepRows s = schedule.step(schedule.at(k));
    forward_step<Cell, T>(a, s, tiling, SharedRows<T>{slice, K}, partials);
    if constexpr (Cell::kProjected) {
      grid_barrier(barrier);
      Cell::forward_projection(a, s, tiling, partials);
    }
  }
}

template <class Cell, typename T>
__global__ void __launch_bounds__(cuda::kMaxPersistentThreads, 1)
    backward_persistent_kernel(typename Cell::template Backward<T> a, Tiling tiling, Schedule schedule) {
  constexpr int G = Cell::kGates;
  FG_DYNAMIC_SHARED(shared);
  const int64_t H = a.shape.hidden_size, K = state_width(a.shape);
  const int S = tiling.units;
  T* slice = reinterpret_cast<T*>(shared);  // [G·H, S]: columns j of W_hh for the block's units j
  const int64_t slice_size = int64_t(G) * H * S;
  for (int64_t e = threadIdx.x; e < slice_size; e += blockDim.x) {
    const int64_t row = e / S;
    const int64_t j = int64_t(blockIdx.x) * S + e % S;
    slice[e] = j < K ? a.w_hh[row * K + j] : T{};
  }
  __syncthreads();
  unsigned* barrier = barrier_counters(a.workspace);
  auto* partials = partials_after<T, typename Numeric<T>::Acc>(slice, slice_size);
  const int64_t passes = backward_passes(a.shape.steps, a.dh0 != nullptr);
  for (int64_t k = 0; k < passes; ++k) {
    if (k > 0) grid_barrier(barrier);
    const StepRows s = schedule.backward_step(k);
    backward_step<Cell, T>(a, s, schedule.backward_later(k), tiling, SharedColumns<T>{slice, S}, partials);
    if constexpr (Cell::kProjected) {
      grid_barrier(barrier);
      Cell::backward_projection(a, s, tiling, partials);
    }
  }
}

}  // namespace fastgates::FG_CUDA_NAMESPACE
