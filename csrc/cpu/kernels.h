// The CPU recurrent kernels: one call runs a whole sequence of one layer and one direction.
//
// What the kernels do and what they leave to the caller
//   Forward: first the input projection x W_ihᵀ + bias of all steps, as one GEMM split by
//   hidden units (each thread computes the gates of its own units, so no thread waits for
//   another); then per step the recurrent product h_{t-1} W_hhᵀ fused with the cell's gate
//   math. Backward: per step the cell's backward fused with dgates · W_hh, and the bias
//   gradients (dgates' column sums) as the gate math produces dgates; the caller does the rest
//   (weight and input gradients) as large GEMMs. Threads split the hidden units;
//   each keeps its share of the weights packed in the workspace for the whole call, and the
//   threads meet at one spin barrier per step.
//
// Conventions for every parameter below
//   T = steps, B = batch, H = hidden_size, P = proj_size (LSTM projections; K = P with a
//   projection, else K = H: the size of h); G = gates per unit (LSTM 4: i, f, g, o; GRU 3: r,
//   z, n). Every array is dense, row-major (C-contiguous) with exactly the shape given, of
//   element type T (float or double), and outputs alias neither inputs nor each other.
//   Sequence arrays are "[N, X]": the rows of all steps, step after step, where step t has
//   rows(t) rows (SequenceLayout) and N = Σ rows(t). Padded sequences have rows(t) = B, so
//   [N, X] is [T, B, X]; packed ones are torch's PackedSequence layout. "G·H" means gate g of
//   unit j lives at column g·H + j, the torch.nn stacking of gates. Arrays marked "or null"
//   may be nullptr.
//   workspace: workspace_bytes(...) bytes, any alignment, contents undefined on entry and exit.
//   num_threads >= 1 (an upper bound: small problems use fewer). Results are bit-identical run
//   after run and for every thread count: each unit block is computed the same way whichever
//   thread owns it.
//   All sizes are >= 1, except input_size, which may be 0, and proj_size (0: no projection);
//   index arithmetic is 64-bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fastgates::cpu {

enum class Kernel { lstm_forward, lstm_backward, gru_forward, gru_backward };
enum class DType { float32, float64 };

struct SequenceShape {
  int64_t steps;          // T
  int64_t batch;          // B: rows of the largest step (the first, when packed)
  int64_t hidden_size;    // H
  int64_t input_size;     // I (the forward kernels' input projection; the backward kernels ignore it)
  int64_t proj_size = 0;  // P: LSTM only; 0 = no projection
};

// Which rows each step has and in which order the steps run.
//   batch_sizes: [T] or null. Null: every step has B rows (padded). Otherwise torch's
//     PackedSequence.batch_sizes: rows(t) = batch_sizes[t], non-increasing, batch_sizes[0] = B;
//     row b of step t belongs to sequence b, so sequence b is present at the steps where
//     b < rows(t), and its initial and final states are row b of the [B, ...] state arrays.
//   reverse: run the steps from T-1 down to 0 (the reverse direction of a bidirectional
//     layer). With packed rows each sequence is reversed within its own length: sequence b
//     starts from its initial state at its last step and ends at step 0.
struct SequenceLayout {
  const int64_t* batch_sizes = nullptr;
  bool reverse = false;
};

// The input projection a forward kernel computes before its time loop.
template <typename T>
struct InputProjection {
  const T* x;        // [N, I]
  const T* w_ih;     // [G·H, I]     torch.nn weight_ih_l0
  const T* bias;     // [G·H] or null: b_ih
  const T* bias_hh;  // [G·H] or null: the LSTM's b_hh, summed with b_ih into one bias (rounded as
                     //              torch.nn's b_ih + b_hh); null for the GRU, whose cell takes b_hh
  T* gates_x;        // [N, G·H]     out: x_t W_ihᵀ + the bias, the pre-activations without the
                     //              recurrent part, written a chunk of steps at a time just before
                     //              those steps (recurrence.h, projection_chunk_steps); or null: the
                     //              kernel projects each chunk into its workspace instead, for inference
  int64_t gates_stride = 0;  // elements from one row of gates_x to the next; 0: G·H (a [N, G·H] array)

  int64_t row_stride(int64_t gates_width) const { return gates_stride > 0 ? gates_stride : gates_width; }
};

// Bytes of workspace a kernel needs for this shape, element type and thread count.
size_t workspace_bytes(Kernel kernel, DType dtype, SequenceShape shape, int num_threads);

// With a projection (P > 0), h_t = W_hr (o ⊙ tanh c_t) as in torch.nn.LSTM(proj_size=P): the
// recurrent input and the output have size P, the cell state size H.
template <typename T>
struct LstmForward {
  SequenceShape shape;
  SequenceLayout layout;
  InputProjection<T> input;  // G = 4
  const T* w_hh;     // [4H, K]     torch.nn weight_hh_l0
  const T* w_hr;     // [P, H]      torch.nn weight_hr_l0; null without a projection
  const T* h0;       // [B, K]
  const T* c0;       // [B, H]
  T* y;              // [N, K]      out: h_t of every step
  T* h_n;            // [B, K]      out: h of each sequence at its last step
  T* c_n;            // [B, H]      out: c of each sequence at its last step
  T* saved_gates;    // [N, 4H]     out or null: σ(i), σ(f), tanh(g), σ(o) of every step, for backward.
                     //             May be input.gates_x itself: each step reads a unit's
                     //             pre-activations before writing its activations in their place
  T* saved_c;        // [N, H]      out or null: c_t of every step, for backward
  T* saved_m;        // [N, H]      out or null (always null without a projection): o ⊙ tanh c_t,
                     //             the projection's input, for the gradient of W_hr
  void* workspace;
  int num_threads;
};

template <typename T>
struct LstmBackward {
  SequenceShape shape;
  SequenceLayout layout;
  const T* w_hh;         // [4H, K]
  const T* w_hr;         // [P, H]   null without a projection
  const T* saved_gates;  // [N, 4H]  from LstmForward
  const T* saved_c;      // [N, H]   from LstmForward
  const T* c0;           // [B, H]
  const T* dy;           // [N, K]   gradient of the loss w.r.t. y; or [K] with dy_one_row
  const T* dh_n;         // [B, K]   gradient w.r.t. h_n
  const T* dc_n;         // [B, H]   gradient w.r.t. c_n
  T* dgates;             // [N, 4H]  out: gradient w.r.t. the gate pre-activations (= d gates_x)
  T* dh;                 // [N, P]   out, with a projection (else null): gradient w.r.t. h_t of
                         //          every step, for the gradient of W_hr
  T* dh0;                // [B, K]   out, or null when not wanted: the products with W_hh of the
                         //          rows that start from their initial state are then skipped
                         //          (at T = 1, all of the kernel's products)
  T* dc0;                // [B, H]   out or null
  T* db;                 // [4H]     out or null: dgates summed over all N rows (the gradient of
                         //          b_ih and of b_hh): up to 8 rows at a time in T, those sums
                         //          added in double, the result rounded to T
  void* workspace;
  int num_threads;
  bool dy_one_row = false;  // dy is one [K] row that is the gradient of every row of y (as from
                            // y.sum() or y.mean(), or zeros when y has none), read in place of
                            // an [N, K] array of equal rows
  int64_t dy_stride(int64_t width) const { return dy_one_row ? 0 : width; }
};

template <typename T>
struct GruForward {
  SequenceShape shape;
  SequenceLayout layout;
  InputProjection<T> input;  // G = 3. When input.gates_x is null and saved is given, the projection
                             // goes into the first 3H of each row of saved, where each step reads a
                             // unit's pre-activations before writing r, z, n over them
  const T* w_hh;     // [3H, H]     torch.nn weight_hh_l0
  const T* b_hh;     // [3H] or null: torch.nn bias_hh_l0 (null: no bias)
  const T* h0;       // [B, H]
  T* y;              // [N, H]      out: h_t of every step
  T* h_n;            // [B, H]      out: h of each sequence at its last step
  T* saved;          // [N, 4H]     out or null: r, z, n, W_hn h_{t-1} + b_hn of every step, for backward
  void* workspace;
  int num_threads;
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
  T* dgates_x;     // [N, 3H]  out: gradient w.r.t. gates_x (= d b_ih summed, d(x W_ihᵀ))
  T* dgates_h;     // [N, 3H]  out: gradient w.r.t. h_{t-1} W_hhᵀ + b_hh
  T* dh0;          // [B, H]   out, or null when not wanted: the products with W_hh of the rows
                   //          that start from their initial state are then skipped
  T* db_ih;        // [3H]     out or null: dgates_x summed over all N rows, as LstmBackward's db
  T* db_hh;        // [3H]     out or null: dgates_h summed the same way
  void* workspace;
  int num_threads;
  bool dy_one_row = false;  // as LstmBackward's
  int64_t dy_stride(int64_t width) const { return dy_one_row ? 0 : width; }
};

// c = op(a) · b, or c += op(a) · b: the backward's time-parallel products (dx = dgates · W_ih,
// dW = dgatesᵀ · x), with the recurrent products' packing and micro-kernel (matmul.h): where
// torch's matmul (MKL) is far from the peak, as on AMD processors with AVX-512 (README, Speed).
template <typename T>
struct Matmul {
  const T* a;    // [m, k], or [k, m] when transpose_a (op(a) = aᵀ)
  const T* b;    // [k, n]
  T* c;          // [m, n]  out; also read when accumulate. Aliases neither a nor b
  int64_t m, n, k;    // all >= 1
  bool transpose_a;
  bool accumulate;    // c += op(a) · b instead of c = op(a) · b
  void* workspace;    // matmul_workspace_bytes(...) bytes
  int num_threads;    // c is bit-identical for every thread count
};

size_t matmul_workspace_bytes(DType dtype, int64_t m, int64_t n, int64_t k, bool transpose_a, int num_threads);

// Run a kernel; picks the widest instruction set this processor supports.
template <typename T> void lstm_forward(const LstmForward<T>& args);
template <typename T> void lstm_backward(const LstmBackward<T>& args);
template <typename T> void gru_forward(const GruForward<T>& args);
template <typename T> void gru_backward(const GruBackward<T>& args);
template <typename T> void matmul(const Matmul<T>& args);

// Name of the instruction set the dispatcher picked ("avx512", "avx2" or "generic").
const char* cpu_isa();
// Use another instruction-set build (for tests): generic, avx2, avx512, or avx512_layout (the
// AVX-512 build's tiling in AVX2 instructions); throws std::invalid_argument if unknown or
// unsupported here. Not to be called while a kernel runs.
void set_cpu_isa(const std::string& name);
// Comma-separated names of the builds this processor can run.
std::string supported_cpu_isas();
// The float32 arithmetic peak of this processor for the build in use, in GFLOP/s, measured:
// every one of num_threads threads (a kernel's team) runs multiply-adds on vectors in
// registers (peak.h) for about `seconds`; the best of three runs.
double peak_gflops(int num_threads, double seconds);

}  // namespace fastgates::cpu
