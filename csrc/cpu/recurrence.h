// The time loop shared by every cell: threads split the hidden units into blocks of kLanes,
// pack their blocks' weights once, then run the steps with one barrier between steps. A cell
// (lstm_cells.h, gru_cells.h) supplies only its gate math on a tile of rows × units; new cell
// variants are new cell classes, not new loops. Included only by the per-ISA kernel builds.
#pragma once

#include <algorithm>
#include <type_traits>

#include "cpu/kernels.h"
#include "cpu/lanes.h"
#include "cpu/recurrent_product.h"
#include "cpu/thread_team.h"

namespace fastgates::cpu::FG_CPU_ISA {

// Rows of the batch one micro-kernel call covers, for G gates.
template <int G>
constexpr int kRowTile = std::clamp(kAccumulators / G, 1, 8);

inline int64_t unit_blocks(int64_t hidden_size, int lanes) { return (hidden_size + lanes - 1) / lanes; }

inline size_t align_up(size_t bytes) { return (bytes + 63) / 64 * 64; }

// Workspace: 64 bytes of alignment slack, the packed recurrent panels of all unit blocks (inner
// dimension `inner`), the packed input panels (inner dimension `input_inner`, 0 for none), then
// `state_arrays` arrays of [B, H] for the cell's carried state.
template <typename T>
size_t recurrence_workspace_bytes(const SequenceShape& s, int64_t inner, int64_t input_inner, int gates,
                                  int state_arrays) {
  const int64_t blocks = unit_blocks(s.hidden_size, kLanes<T>);
  return 64 + align_up(sizeof(T) * blocks * panel_elements<T>(inner, gates)) +
         align_up(sizeof(T) * blocks * panel_elements<T>(input_inner, gates)) +
         state_arrays * align_up(sizeof(T) * s.batch * s.hidden_size);
}

template <typename T>
struct Workspace {
  T* panels;        // recurrent weights
  T* input_panels;  // input weights (forward)
  T* state;         // [B, H] state array
};

template <typename T>
Workspace<T> carve_workspace(void* base, const SequenceShape& s, int64_t inner, int64_t input_inner, int gates) {
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(base) + 63) / 64 * 64;
  const int64_t blocks = unit_blocks(s.hidden_size, kLanes<T>);
  const size_t panels_bytes = align_up(sizeof(T) * blocks * panel_elements<T>(inner, gates));
  const size_t input_bytes = align_up(sizeof(T) * blocks * panel_elements<T>(input_inner, gates));
  return {reinterpret_cast<T*>(aligned), reinterpret_cast<T*>(aligned + panels_bytes),
          reinterpret_cast<T*>(aligned + panels_bytes + input_bytes)};
}

// Calls body(std::integral_constant<int, R>{}, row0) for the row tiles covering [0, batch),
// R = kRowTile<G> except in the last tile.
template <int G, int R = kRowTile<G>, class Body>
FG_ALWAYS_INLINE void for_each_row_tile(int64_t batch, int64_t row0, Body&& body) {
  if constexpr (R >= 1) {
    for (; row0 + R <= batch; row0 += R) body(std::integral_constant<int, R>{}, row0);
    if constexpr (R > 1) for_each_row_tile<G, R - 1>(batch, row0, body);
  }
}

struct BlockRange {
  int64_t begin, end;
};

inline BlockRange blocks_of_thread(int64_t blocks, int threads, int thread) {
  return {blocks * thread / threads, blocks * (thread + 1) / threads};
}

// Threads for a call: at most one per unit block, per multiply_adds_per_thread() of a step's
// recurrent product, and per hardware thread. Results do not depend on the thread count: each
// unit block is computed the same way whichever thread owns it.
inline int threads_for(int64_t blocks, int64_t multiply_adds_per_step, int requested) {
  const int64_t per_thread = std::max<int64_t>(1, multiply_adds_per_thread());
  const int64_t by_work = std::max<int64_t>(1, multiply_adds_per_step / per_thread);
  return static_cast<int>(std::min({blocks, by_work, static_cast<int64_t>(std::clamp(requested, 1, max_team_threads()))}));
}

// gates_x = x W_ihᵀ + bias for all T·B rows and the hidden units of blocks [begin, end): the
// input projection as a GEMM with the same packing and micro-kernel as the recurrent product.
template <typename T, int G>
void project_inputs(const InputProjection<T>& p, int64_t rows, int64_t input_size, int64_t hidden_size,
                    BlockRange blocks, T* panels) {
  constexpr int L = kLanes<T>;
  const int64_t panel_size = panel_elements<T>(input_size, G);
  for (int64_t u = blocks.begin; u < blocks.end; ++u) {
    T* panel = panels + u * panel_size;
    const int64_t j0 = u * L;
    const int units = static_cast<int>(std::min<int64_t>(L, hidden_size - j0));
    pack_rows_panel(p.w_ih, hidden_size, input_size, G, j0, panel);
    T bias[G][L] = {};
    if (p.bias) {
      for (int g = 0; g < G; ++g) copy_lanes(bias[g], p.bias + g * hidden_size + j0, units);
    }
    for_each_row_tile<G>(rows, 0, [&](auto tile, int64_t row0) {
      constexpr int R = decltype(tile)::value;
      Vec<T> out[R][G];
      micro_kernel<T, R, G>(p.x + row0 * input_size, input_size, panel, input_size, out);
      for (int r = 0; r < R; ++r) {
        for (int g = 0; g < G; ++g) {
          T gates[L];
          (Lanes<T>(out[r][g]) + Lanes<T>::load(bias[g])).store(gates);
          copy_lanes(p.gates_x + (row0 + r) * G * hidden_size + g * hidden_size + j0, gates, units);
        }
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Forward. Cell interface:
//   using Scalar;  static constexpr int kGates;
//   int64_t hidden_size, batch, steps, input_size;  const Scalar* w_hh;   ([G·H, H])
//   const InputProjection<Scalar>& input() const;
//   const Scalar* hidden_before(int64_t t);                    ([B, H], h_{t-1})
//   template <int R> void step(int64_t t, int64_t row0, int64_t j0, int units,
//                              const Scalar (&rec)[R][kGates][kLanes]);
//     rec = h_{t-1} W_hhᵀ for rows row0.., gates, units j0..j0+units-1.
template <class Cell>
struct ForwardJob {
  Cell cell;
  typename Cell::Scalar* panels;
  typename Cell::Scalar* input_panels;
};

template <class Cell>
void forward_thread(void* context, int thread, int team_size, SpinBarrier& barrier) {
  using T = typename Cell::Scalar;
  constexpr int G = Cell::kGates;
  constexpr int L = kLanes<T>;
  auto& job = *static_cast<ForwardJob<Cell>*>(context);
  Cell& cell = job.cell;
  const int64_t H = cell.hidden_size;
  const int64_t panel_size = panel_elements<T>(H, G);
  const BlockRange mine = blocks_of_thread(unit_blocks(H, L), team_size, thread);
  // Each thread projects the inputs of its own units: its time loop reads only those, so the
  // loop can start without a barrier.
  project_inputs<T, G>(cell.input(), cell.steps * cell.batch, cell.input_size, H, mine, job.input_panels);
  for (int64_t u = mine.begin; u < mine.end; ++u) {
    pack_rows_panel(cell.w_hh, H, H, G, u * L, job.panels + u * panel_size);
  }
  int sense = 0;
  for (int64_t t = 0; t < cell.steps; ++t) {
    const T* h_prev = cell.hidden_before(t);
    for (int64_t u = mine.begin; u < mine.end; ++u) {
      const T* panel = job.panels + u * panel_size;
      const int64_t j0 = u * L;
      const int units = static_cast<int>(std::min<int64_t>(L, H - j0));
      for_each_row_tile<G>(cell.batch, 0, [&](auto rows, int64_t row0) {
        constexpr int R = decltype(rows)::value;
        Vec<T> out[R][G];
        micro_kernel<T, R, G>(h_prev + row0 * H, H, panel, H, out);
        T rec[R][G][L];
        std::memcpy(rec, out, sizeof rec);
        cell.template step<R>(t, row0, j0, units, rec);
      });
    }
    if (t + 1 < cell.steps) barrier.wait(&sense);
  }
}

template <class Cell>
void run_forward(const Cell& cell, void* workspace, int num_threads) {
  using T = typename Cell::Scalar;
  const int64_t work = cell.batch * Cell::kGates * cell.hidden_size * cell.hidden_size;
  const int threads = threads_for(unit_blocks(cell.hidden_size, kLanes<T>), work, num_threads);
  ForwardJob<Cell> job{cell, nullptr, nullptr};
  SequenceShape shape{cell.steps, cell.batch, cell.hidden_size, cell.input_size};
  Workspace<T> ws = carve_workspace<T>(workspace, shape, cell.hidden_size, cell.input_size, Cell::kGates);
  job.panels = ws.panels;
  job.input_panels = ws.input_panels;
  job.cell.attach_state(ws.state);
  run_team(threads, &forward_thread<Cell>, &job);
}

// ---------------------------------------------------------------------------------------------
// Backward. Cell interface:
//   using Scalar;  static constexpr int kGates;
//   int64_t hidden_size, batch, steps;  const Scalar* w_hh;   ([G·H, H])
//   const Scalar* recurrent_gradient(int64_t t);               ([B, G·H]: d(h_{t-1} W_hhᵀ) of step t)
//   template <int R> void step(int64_t t, int64_t row0, int64_t j0, int units,
//                              const Scalar (*rec)[kLanes]);
//     rec = recurrent_gradient(t+1) · W_hh for rows row0.. and units j0..; null at the last step.
//   template <int R> void initial(int64_t row0, int64_t j0, int units, const Scalar (*rec)[kLanes]);
//     rec = recurrent_gradient(0) · W_hh: the recurrent part of dL/dh0.
template <class Cell>
struct BackwardJob {
  Cell cell;
  typename Cell::Scalar* panels;
};

template <class Cell>
void backward_thread(void* context, int thread, int team_size, SpinBarrier& barrier) {
  using T = typename Cell::Scalar;
  constexpr int G = Cell::kGates;
  constexpr int L = kLanes<T>;
  auto& job = *static_cast<BackwardJob<Cell>*>(context);
  Cell& cell = job.cell;
  const int64_t H = cell.hidden_size;
  const int64_t K = G * H;
  const int64_t panel_size = panel_elements<T>(K, 1);
  const BlockRange mine = blocks_of_thread(unit_blocks(H, L), team_size, thread);
  for (int64_t u = mine.begin; u < mine.end; ++u) {
    pack_columns_panel(cell.w_hh, H, K, u * L, job.panels + u * panel_size);
  }
  int sense = 0;
  // t = steps is the pass that produces dL/dh0 from the gradient of step 0.
  for (int64_t t = cell.steps - 1; t >= -1; --t) {
    const T* later = t + 1 < cell.steps ? cell.recurrent_gradient(t + 1) : nullptr;
    for (int64_t u = mine.begin; u < mine.end; ++u) {
      const T* panel = job.panels + u * panel_size;
      const int64_t j0 = u * L;
      const int units = static_cast<int>(std::min<int64_t>(L, H - j0));
      for_each_row_tile<1>(cell.batch, 0, [&](auto rows, int64_t row0) {
        constexpr int R = decltype(rows)::value;
        T rec[R][L];
        if (later) {
          Vec<T> out[R][1];
          micro_kernel<T, R, 1>(later + row0 * K, K, panel, K, out);
          std::memcpy(rec, out, sizeof rec);
        }
        if (t >= 0) {
          cell.template step<R>(t, row0, j0, units, later ? rec : nullptr);
        } else {
          cell.template initial<R>(row0, j0, units, rec);
        }
      });
    }
    if (t >= 0) barrier.wait(&sense);
  }
}

template <class Cell>
void run_backward(const Cell& cell, void* workspace, int num_threads) {
  using T = typename Cell::Scalar;
  const int64_t work = cell.batch * Cell::kGates * cell.hidden_size * cell.hidden_size;
  const int threads = threads_for(unit_blocks(cell.hidden_size, kLanes<T>), work, num_threads);
  BackwardJob<Cell> job{cell, nullptr};
  SequenceShape shape{cell.steps, cell.batch, cell.hidden_size, 0};
  Workspace<T> ws = carve_workspace<T>(workspace, shape, Cell::kGates * cell.hidden_size, 0, 1);
  job.panels = ws.panels;
  job.cell.attach_state(ws.state);
  run_team(threads, &backward_thread<Cell>, &job);
}

}  // namespace fastgates::cpu::FG_CPU_ISA
