// The CUDA recurrent kernels: one call runs a whole sequence of one layer and one direction.
// Plain C++ (no CUDA header), so that the bindings compile with the host compiler alone.
//
// What the kernels do and what they leave to the caller
//   The same conventions as the CPU kernels (csrc/cpu/kernels.h: gate order, layouts, what
//   forward saves, what backward produces), with one difference: the input projection
//   x W_ihᵀ + bias is not inside the kernel. The caller computes gates_x with one large GEMM
//   (torch, i.e. cuBLAS) first and passes it in. Backward likewise leaves dW_ih, dW_hh, dx and
//   the bias gradients to GEMMs/reductions by the caller.
//   Per step the recurrent product h_{t-1} W_hhᵀ (forward) or dgates_{t+1} W_hh (backward) is
//   fused with the cell's gate math (csrc/cell/), so gates never go to global memory. Two
//   strategies (see LaunchConfig): one launch per step, or one persistent cooperative launch
//   whose blocks keep their slice of W_hh in shared memory.
//
// Two builds of the same kernel sources (csrc/cuda/recurrence.cuh):
//   fastgates::cuda           nvcc, runs on the GPU (only when the build found nvcc: FG_WITH_CUDA)
//   fastgates::cuda_emulated  g++ with csrc/cuda/emulation.h, runs on the CPU (always built;
//                             for tests, small shapes only: every CUDA thread is a CPU thread)
//
// Conventions for every parameter below
//   T = steps, B = batch, H = hidden_size; G = gates per unit (LSTM 4: i, f, g, o; GRU 3: r, z, n).
//   Every array is device memory (host memory for the emulated build), dense, row-major with
//   exactly the shape given, of element type T: float, double, Half or BFloat16 (below);
//   outputs alias neither inputs nor each other. The 16-bit types are computed in float (the
//   recurrent products accumulate in float, the LSTM cell state between steps stays float)
//   and rounded to nearest even where stored. Arrays marked "or null" may be nullptr.
//   Sequence arrays are "[N, X]": the rows of all steps, step after step, where step t has
//   rows(t) rows (SequenceLayout) and N = Σ rows(t); padded sequences have rows(t) = B, so
//   [N, X] is [T, B, X]; packed ones are torch's PackedSequence layout. "[N, G·H]": gate g of
//   unit j of row n lives at (n·G + g)·H + j (the torch.nn stacking of gates).
//   workspace: workspace_bytes(config, T, packed) bytes of device memory, 16-byte aligned,
//   contents undefined on entry and exit: 16 bytes for the persistent strategy's grid barrier
//   (zeroed by the call, on the stream), then the B·H running state of the recurrence in the
//   compute type (LSTM forward c, LSTM backward dc, GRU backward the z·dh that bypasses W_hh);
//   with packed sequences then, from byte schedule_table_offset(config) on, the T + 1 step
//   offsets (int64) the persistent kernels read. The call writes them on the stream by small
//   kernels that receive the values as kernel arguments (host.cuh: write_table), which a launch
//   copies when it is queued: nothing on the host must outlive the call, and there is neither a
//   pinned buffer nor a synchronisation. (The per-step strategy passes each step's rows as
//   arguments of its launch and does not read the table.)
//   All sizes are >= 1; index arithmetic is 64-bit.
//   The kernels address the rows of a step only through the step description the host code
//   or the persistent kernel's time loop derives from the layout (recurrence.cuh: Schedule,
//   StepRows), the same schedule as the CPU kernels' StepSchedule (csrc/cpu/recurrence.h).
//   stream: a cudaStream_t (torch.cuda.current_stream().cuda_stream); the calls are
//   asynchronous on it. Errors (invalid configuration, a failed launch or CUDA API call)
//   throw std::runtime_error naming the operation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fastgates::cuda {

// The 16-bit element types as raw bits (the layout of torch.float16 / torch.bfloat16
// elements), so that this header needs no CUDA header.
struct Half {
  uint16_t bits;  // IEEE 754 binary16
};
struct BFloat16 {
  uint16_t bits;  // the high half of a float32
};

enum class Strategy {
  // One launch per step (backward: per step, plus one for dh0 when it is wanted). Any size.
  per_step,
  // One cooperative launch for the whole sequence; each block keeps its G·S·H slice of W_hh
  // in shared memory and the blocks meet at a grid barrier per step. Needs every block
  // resident at once and the slice within the shared memory of a block.
  persistent,
};

// What the strategy heuristic needs to know of the device.
struct DeviceProperties {
  int sm_count;                   // streaming multiprocessors
  size_t shared_bytes_per_block;  // dynamic shared memory one block may opt in to
  bool cooperative_launch;        // the device supports cooperative launches
};

// Batch rows per block: each thread keeps this many accumulators in registers.
constexpr int kBatchTile = 4;
// The head of the workspace: the persistent strategy's grid barrier.
constexpr size_t kBarrierBytes = 16;
// Threads per block at most (the kernels' __launch_bounds__).
constexpr int kMaxPerStepThreads = 256;
constexpr int kMaxPersistentThreads = 1024;

// How a kernel is launched. Grid: x = hidden-unit slices of `units_per_block` units,
// y = batch tiles of kBatchTile rows. Block: gates · units_per_block · reduction_lanes threads
// (forward: reduction_lanes threads share one gate row's dot product over H; backward: the
// same threads split the G·H rows of one unit's column of W_hh).
struct LaunchConfig {
  Strategy strategy;
  int units_per_block;  // S
  int reduction_lanes;  // R
  int grid_x, grid_y, threads;
  size_t shared_bytes;     // dynamic shared memory per block
  size_t workspace_bytes;  // of the `workspace` argument
};

// The configuration of `strategy` for this problem; throws std::invalid_argument if the
// strategy cannot run it (persistent: the grid does not fit on the device at once, or the
// weight slice does not fit in shared memory, or no cooperative launch). dtype_bytes: 2 (Half,
// BFloat16), 4 (float) or 8 (double).
LaunchConfig make_config(Strategy strategy, int64_t batch, int64_t hidden, int gates, int dtype_bytes,
                         const DeviceProperties& device);

// The heuristic: persistent whenever it can run (it reads W_hh from global memory once per
// sequence instead of once per step, and saves T − 1 launches), else per step.
//   Per step: S = min(8, H) units per block, R = 8 lanes.
//   Persistent: the grid is one block per SM at most: with tiles = ceil(B / kBatchTile) batch
//   tiles, S = ceil(H / floor(sm_count / tiles)) units per block; it runs if tiles ≤ sm_count,
//   G·S ≤ 256 gate rows per block, the device has cooperative launches, and the weight slice
//   G·S·H·dtype_bytes (rounded up to 16) plus the partial sums kBatchTile·G·S·R·acc_bytes
//   (R = min(8, 1024 / G·S); acc_bytes 8 for double, else 4) fit in shared_bytes_per_block.
// Examples on an A100 (108 SMs, 163 KiB per block), float32 LSTM: B=8, H=256: 2 tiles, S=5,
// 22.5 KiB → persistent; B=64, H=1024: 16 tiles, S=171 → per step; B=1, H=1024: S=10 needs
// 165 KiB → per step; B=512: 128 tiles > 108 SMs → per step (tests/test_cuda_emulated.py).
LaunchConfig choose_strategy(int64_t batch, int64_t hidden, int gates, int dtype_bytes,
                             const DeviceProperties& device);
// An LSTM with a projection uses the configuration of its hidden_size H: its W_hh slices
// ([G·S, P] rows, [G·H, S] columns) are no larger than without one, and the phases over the P
// outputs or columns use the grid's first ceil(P / S) block columns.

// Bytes of workspace a call of T = `steps` steps needs: config.workspace_bytes when padded;
// packed, the step table after it (at schedule_table_offset(config), (T + 1)·8 bytes).
size_t workspace_bytes(const LaunchConfig& config, int64_t steps, bool packed);
size_t schedule_table_offset(const LaunchConfig& config);

struct SequenceShape {
  int64_t steps;           // T
  int64_t batch;           // B: rows of the largest step (the first, when packed)
  int64_t hidden_size;     // H
  int64_t proj_size = 0;   // P: LSTM with a projection (1 <= P < H, w_hr given), else 0
};

// Which rows each step has and in which order the steps run: the CPU kernels' SequenceLayout
// (csrc/cpu/kernels.h), with the same meaning.
//   batch_sizes: [T] or null, in HOST memory (unlike every other array; torch keeps
//     PackedSequence.batch_sizes on the CPU), read by the host code before the call returns.
//     Null: every step has B rows (padded). Otherwise rows(t) = batch_sizes[t], at least 1,
//     non-increasing, batch_sizes[0] = B (torch's PackedSequence layout; std::invalid_argument
//     otherwise); row b of step t belongs to sequence b, whose initial and final states are
//     row b of the [B, H] state arrays.
//   reverse: run the steps from T-1 down to 0 (the reverse direction of a bidirectional
//     layer). With packed rows each sequence is reversed within its own length: sequence b
//     starts from its initial state at its last step and ends at step 0.
struct SequenceLayout {
  const int64_t* batch_sizes = nullptr;
  bool reverse = false;
};

// LSTM with a projection (torch.nn.LSTM's proj_size = P): K = P below, w_hr given, and each
// step has two phases separated by a grid barrier (persistent) or a second launch (per step):
//   forward   A: gates from h_{t-1} (size P) and the cell update; m_t = o ⊙ tanh(c_t) into
//                saved_m (which the projected forward therefore always needs);
//             B: h_t = m_t W_hrᵀ into y and h_n.
//   backward  A: dL/dh_t = dy_t + dgates_{t+1} W_hh (or + dh_n where the sequence ends) into dh,
//                and dh0 of the sequences that started at the step visited before;
//             B: dL/dm_t = dL/dh_t W_hr, then the cell's backward.
// The caller computes dW_hr = dhᵀ · saved_m (one GEMM). Phase B reads W_hr from global memory
// in both strategies (the persistent blocks keep only their W_hh slice in shared memory).
// Without a projection K = H, w_hr, saved_m and dh are null, and there is one phase per step.
template <typename T>
struct LstmForward {
  SequenceShape shape;
  SequenceLayout layout;
  const T* gates_x;  // [N, 4H]     x_t W_ihᵀ + b_ih + b_hh, computed by the caller
  const T* w_hh;     // [4H, K]     torch.nn weight_hh_l0
  const T* w_hr;     // [P, H] or null: torch.nn weight_hr_l0 (null: no projection)
  const T* h0;       // [B, K]
  const T* c0;       // [B, H]
  T* y;              // [N, K]      out: h_t of every step
  T* h_n;            // [B, K]      out: h of each sequence at its last step
  T* c_n;            // [B, H]      out: c of each sequence at its last step
  T* saved_gates;    // [N, 4H]     out or null: σ(i), σ(f), tanh(g), σ(o) of every step, for backward
  T* saved_c;        // [N, H]      out or null (null iff saved_gates is): c_t of every step
  T* saved_m;        // [N, H]      out, iff w_hr: m_t = o ⊙ tanh(c_t) of every step (phase B's input)
  void* workspace;
};

template <typename T>
struct LstmBackward {
  SequenceShape shape;
  SequenceLayout layout;
  const T* w_hh;         // [4H, K]
  const T* w_hr;         // [P, H] or null
  const T* saved_gates;  // [N, 4H]  from LstmForward
  const T* saved_c;      // [N, H]   from LstmForward
  const T* c0;           // [B, H]
  const T* dy;           // [N, K]   gradient of the loss w.r.t. y; or [K] with dy_one_row
  const T* dh_n;         // [B, K]   gradient w.r.t. h_n
  const T* dc_n;         // [B, H]   gradient w.r.t. c_n
  T* dgates;             // [N, 4H]  out: gradient w.r.t. the gate pre-activations (= d gates_x)
  T* dh;                 // [N, K]   out, iff w_hr: dL/dh_t of every step (for dW_hr)
  T* dh0;                // [B, K]   out, or null when not wanted: the products with W_hh of the
                         //          rows that start from their initial state are then skipped
                         //          (as the CPU kernels' LstmBackward::dh0)
  T* dc0;                // [B, H]   out or null
  void* workspace;
  bool dy_one_row = false;  // dy is one [K] row, the gradient of every row of y (as the CPU
                            // kernels' LstmBackward::dy_one_row)
};

template <typename T>
struct GruForward {
  SequenceShape shape;
  SequenceLayout layout;
  const T* gates_x;  // [N, 3H]     x_t W_ihᵀ + b_ih, computed by the caller
  const T* w_hh;     // [3H, H]     torch.nn weight_hh_l0
  const T* b_hh;     // [3H] or null: torch.nn bias_hh_l0 (null: no bias)
  const T* h0;       // [B, H]
  T* y;              // [N, H]      out: h_t of every step
  T* h_n;            // [B, H]      out: h of each sequence at its last step
  T* saved;          // [N, 4H]     out or null: r, z, n, W_hn h_{t-1} + b_hn of every step, for backward
  void* workspace;
};

template <typename T>
struct GruBackward {
  SequenceShape shape;
  SequenceLayout layout;
  const T* w_hh;   // [3H, H]
  const T* saved;  // [N, 4H]  from GruForward
  const T* h0;     // [B, H]
  const T* y;      // [N, H]   from GruForward (h_{t-1} of each row)
  const T* dy;     // [N, H], or [H] with dy_one_row
  const T* dh_n;   // [B, H]
  T* dgates_x;     // [N, 3H]  out: gradient w.r.t. gates_x
  T* dgates_h;     // [N, 3H]  out: gradient w.r.t. h_{t-1} W_hhᵀ + b_hh (= d b_hh summed)
  T* dh0;          // [B, H]   out, or null when not wanted (as LstmBackward's)
  void* workspace;
  bool dy_one_row = false;  // as LstmBackward's
};

#if defined(FG_WITH_CUDA)
// The GPU build. `device`: the CUDA device index of the arrays (made current for the call).
DeviceProperties device_properties(int device);
template <typename T> void lstm_forward(const LstmForward<T>& args, const LaunchConfig& config, int device, void* stream);
template <typename T> void lstm_backward(const LstmBackward<T>& args, const LaunchConfig& config, int device, void* stream);
template <typename T> void gru_forward(const GruForward<T>& args, const LaunchConfig& config, int device, void* stream);
template <typename T> void gru_backward(const GruBackward<T>& args, const LaunchConfig& config, int device, void* stream);
#endif

}  // namespace fastgates::cuda

namespace fastgates::cuda_emulated {

using cuda::LaunchConfig;

// The device the emulation pretends to be (8 SMs, 99 KiB of shared memory per block,
// cooperative launches), so that the heuristic and both strategies can be tested.
cuda::DeviceProperties device_properties();
template <typename T> void lstm_forward(const cuda::LstmForward<T>& args, const LaunchConfig& config);
template <typename T> void lstm_backward(const cuda::LstmBackward<T>& args, const LaunchConfig& config);
template <typename T> void gru_forward(const cuda::GruForward<T>& args, const LaunchConfig& config);
template <typename T> void gru_backward(const cuda::GruBackward<T>& args, const LaunchConfig& config);

// Runs a kernel that checks one promise of the emulation (emulation_checks.cpp): throws
// std::runtime_error for divergent_barrier, too_many_threads, too_much_shared_memory and
// exception (the kernel breaks a rule); returns for private_shared_memory and grid_barrier.
void check_emulation(const std::string& name);

}  // namespace fastgates::cuda_emulated
