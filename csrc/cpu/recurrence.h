// The time loop shared by every cell: threads split the hidden units into blocks of kLanes,
// pack their blocks' weights once (or, in short calls, read them in place: direct_products),
// then run the steps with one barrier between steps. A cell
// (lstm_cells.h, gru_cells.h) supplies only its gate math on a tile of rows × units; new cell
// variants are new cell classes, not new loops. Included only by the per-ISA kernel builds.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/lanes.h"
#include "cpu/recurrent_product.h"
#include "cpu/thread_team.h"

namespace fastgates::cpu::FG_CPU_ISA {

// Rows of the batch one micro-kernel call covers, for G gates.
template <int G>
constexpr int kRowTile = std::clamp(kAccumulators / G, 1, 8);

inline int64_t unit_blocks(int64_t size, int lanes) { return (size + lanes - 1) / lanes; }

// Carves 64-byte-aligned arrays out of the workspace in a fixed order. With a null base it
// only counts bytes, so workspace_bytes and the kernels share one description of the layout.
class WorkspaceCarver {
 public:
  explicit WorkspaceCarver(void* base)
      : next_(base ? (reinterpret_cast<uintptr_t>(base) + 63) / 64 * 64 : 0), counting_(!base) {}

  template <typename T>
  T* take(int64_t elements) {
    const size_t bytes = (sizeof(T) * static_cast<size_t>(elements) + 63) / 64 * 64;
    T* array = counting_ ? nullptr : reinterpret_cast<T*>(next_);
    next_ += bytes;
    used_ += bytes;
    return array;
  }

  size_t bytes() const { return used_; }

 private:
  uintptr_t next_;
  bool counting_;
  size_t used_ = 64;  // alignment slack
};

struct BlockRange {
  int64_t begin, end;
};

// Rows and order of the steps (kernels.h, SequenceLayout). "Before" and "after" are in the
// order the forward pass runs, which is reversed for the reverse direction.
//
// The forward's input projection runs in chunks of chunk_steps consecutive steps (in that
// order), each just before its steps: a chunk's rows are contiguous in the [N, ...] arrays, and
// gates_row() says where a row of a step sits in the projection's output. With chunk_buffer
// that output is a buffer of the workspace that holds one chunk at a time (inference), and
// rows count from the chunk's first; else it is the [N, G·H] gates_x (training), and gates_row
// is the row of the [N, ...] arrays.
class StepSchedule {
 public:
  StepSchedule(const SequenceShape& s, const SequenceLayout& layout, int64_t chunk_steps, bool chunk_buffer)
      : steps_(s.steps), reverse_(layout.reverse), chunk_steps_(std::max<int64_t>(1, chunk_steps)),
        offsets_(s.steps + 1), chunk_first_row_(s.steps, 0) {
    offsets_[0] = 0;
    for (int64_t t = 0; t < steps_; ++t) offsets_[t + 1] = offsets_[t] + (layout.batch_sizes ? layout.batch_sizes[t] : s.batch);
    if (chunk_buffer) {
      for (int64_t k = 0; k < steps_; ++k) chunk_first_row_[at(k)] = chunk_rows(k - k % chunk_steps_).begin;
    }
  }

  // Whether the k-th step the forward pass runs is the first of its chunk.
  bool starts_chunk(int64_t k) const { return k % chunk_steps_ == 0; }
  // Rows of the [N, ...] arrays of the chunk that starts with the k-th step run.
  BlockRange chunk_rows(int64_t k) const {
    const int64_t last = std::min(steps_, k + chunk_steps_) - 1;
    if (reverse_) return {offsets_[at(last)], offsets_[at(k) + 1]};
    return {offsets_[k], offsets_[last + 1]};
  }
  // Row of the projection's output that holds row `row` of step t.
  int64_t gates_row(int64_t t, int64_t row) const { return offsets_[t] + row - chunk_first_row_[t]; }

  int64_t steps() const { return steps_; }
  // The k-th step the forward pass runs.
  int64_t at(int64_t k) const { return reverse_ ? steps_ - 1 - k : k; }
  int64_t rows(int64_t t) const { return offsets_[t + 1] - offsets_[t]; }
  // First row of step t in the [N, ...] arrays.
  int64_t offset(int64_t t) const { return offsets_[t]; }
  // The step whose state step t continues, or -1.
  int64_t before(int64_t t) const {
    const int64_t b = reverse_ ? t + 1 : t - 1;
    return b >= 0 && b < steps_ ? b : -1;
  }
  // The step that continues step t's state, or -1.
  int64_t after(int64_t t) const {
    const int64_t a = reverse_ ? t - 1 : t + 1;
    return a >= 0 && a < steps_ ? a : -1;
  }
  // Rows [0, continued(t)) of step t continue a state of before(t); the others start from the
  // initial state.
  int64_t continued(int64_t t) const {
    const int64_t b = before(t);
    return b < 0 ? 0 : std::min(rows(t), rows(b));
  }
  // Rows [0, carried(t)) of step t hand their state on to after(t); the others end at step t.
  int64_t carried(int64_t t) const {
    const int64_t a = after(t);
    return a < 0 ? 0 : std::min(rows(t), rows(a));
  }

 private:
  int64_t steps_;
  bool reverse_;
  int64_t chunk_steps_;
  std::vector<int64_t> offsets_;
  std::vector<int64_t> chunk_first_row_;  // per step t, the first row of its chunk
};

// Calls body(std::integral_constant<int, R>{}, row0) for the row tiles covering [0, batch),
// R = kRowTile<G> except in the last tile.
template <int G, int R = kRowTile<G>, class Body>
FG_ALWAYS_INLINE void for_each_row_tile(int64_t batch, int64_t row0, Body&& body) {
  if constexpr (R >= 1) {
    for (; row0 + R <= batch; row0 += R) body(std::integral_constant<int, R>{}, row0);
    if constexpr (R > 1) for_each_row_tile<G, R - 1>(batch, row0, body);
  }
}

// The i-th group of `range` the backward visits at step k: odd steps go backwards, so that a
// step starts on the panels the step before used last, the likeliest to be still in L2 when a
// thread's panels fill it (B=1, H=256: 512 KiB a core). The order does not change any group's
// result. Measured at B=1: +6 % for the backward; the forward, tried the same way, gained
// nothing and keeps one direction.
inline int64_t serpentine(BlockRange range, int64_t k, int64_t i) {
  return (k & 1) ? range.end - 1 - i : range.begin + i;
}

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

// Cache blocking of the products (BLIS's kc): a chunk of kChunk<T, G> inner elements of a
// panel (16 KiB) and the chunk's columns of kSuperTile<G> rows of `a` stay in L1 while every
// row tile of those rows uses them, whatever the inner dimension. The super-tile is a whole
// number of row tiles.
template <typename T, int G>
constexpr int64_t kChunk = std::max<int64_t>(16, 16384 / (G * kLanes<T> * int64_t(sizeof(T))));
template <int G>
constexpr int kSuperTile = 8 * kRowTile<G>;

// Calls run(std::integral_constant<int, R>{}, row0, rec) for the row tiles of rows [begin, end),
// rec = a[row0.., :K] · panel: the product of one panel (G gates, or G blocks of units; row k
// of the panel at panel + k·panel_stride, G·kLanes when packed). a is row-major [rows][inner],
// or with ColumnStride > 0 column-major: element (row, k) at a[k·ColumnStride + row]. The sum
// over the inner dimension is taken chunk by chunk (kChunk) and the chunks' sums are added in
// order: the result depends on the shape only. Split > 0 fixes micro_kernel's partial sums for
// every row tile, so that a row's result does not depend on where the tiles start either;
// 0 takes each tile's own (kSplit<R, G>).
template <typename T, int G, int Split = 0, int ColumnStride = 0, class Run>
FG_ALWAYS_INLINE void for_each_product(const T* a, int64_t inner, const T* panel, int64_t panel_stride, int64_t begin,
                                       int64_t end, Run&& run) {
  constexpr bool column_major = ColumnStride > 0;
  constexpr int L = kLanes<T>;
  constexpr int64_t chunk = kChunk<T, G>;
  constexpr int super = kSuperTile<G>;
  for (int64_t s0 = begin; s0 < end; s0 += super) {
    const int64_t s1 = std::min<int64_t>(end, s0 + super);
    // The sums of the chunks before the last, per row of the super-tile. The first chunk's
    // products are stored (nothing is zeroed), and the last chunk's go to run with the sums
    // added, without another pass: at B = 32, H = 128 (one chunk with AVX2) that made the LSTM
    // forward 9 % faster, and a GEMM with 100 inner rows 13 %.
    Vec<T> sums[super][G];
    for (int64_t k0 = 0; k0 == 0 || k0 < inner; k0 += chunk) {  // one empty chunk when inner is 0
      const int64_t k1 = std::min<int64_t>(inner, k0 + chunk);
      const bool first = k0 == 0, last = k1 >= inner;
      for_each_row_tile<G>(s1, s0, [&](auto rows, int64_t row0) {
        constexpr int R = decltype(rows)::value;
        Vec<T> out[R][G];
        micro_kernel<T, R, G, (Split > 0 ? Split : kSplit<R, G>), column_major>(
            column_major ? a + k0 * ColumnStride + row0 : a + row0 * inner + k0, column_major ? ColumnStride : inner,
            panel + k0 * panel_stride, panel_stride, k1 - k0, out);
        for (int r = 0; r < R; ++r) {
          for (int g = 0; g < G; ++g) {
            Vec<T>& partial = sums[row0 - s0 + r][g];
            if (!first) out[r][g] = partial + out[r][g];
            if (!last) partial = out[r][g];
          }
        }
        if (last) {
          T rec[R][G][L];
          std::memcpy(rec, out, sizeof rec);
          run(rows, row0, rec);
        }
      });
    }
  }
}

// Panels of `panel_size` elements that a product passing them over many super-tiles of rows
// takes at a time: as many as fill half of a core's L2 (at least one; 1 MiB assumed where
// its size is not known), so that every super-tile reads them from L2, not from L3 or
// memory. Each (super-tile, panel) product is computed the same way in any order: results do
// not change.
template <typename T>
int64_t panels_in_cache(int64_t panel_size) {
  const int64_t known = l2_cache_bytes();
  const int64_t l2 = known > 0 ? known : int64_t(1) << 20;
  return std::max<int64_t>(1, l2 / 2 / std::max<int64_t>(1, panel_size * int64_t(sizeof(T))));
}

inline int units_in_block(int64_t size, int64_t j0, int lanes) {
  return static_cast<int>(std::min<int64_t>(lanes, size - j0));
}

// The panels of W_ih for the hidden units of blocks [begin, end), one after another from
// `panels`, for project_inputs.
template <typename T, int G>
void pack_input_panels(const InputProjection<T>& p, int64_t input_size, int64_t hidden_size, BlockRange blocks,
                       T* panels) {
  const int64_t panel_size = panel_elements<T>(input_size, G);
  for (int64_t u = blocks.begin; u < blocks.end; ++u) {
    pack_rows_panel(p.w_ih, hidden_size, input_size, G, u * kLanes<T>, panels + (u - blocks.begin) * panel_size);
  }
}

// x W_ihᵀ + bias (+ bias_hh) for rows [rows.begin, rows.end) of x and the hidden units of blocks
// [begin, end), into rows 0.. of p.gates_x: the input projection as a GEMM with the same
// packing and micro-kernel as the recurrent product. Rows outside, blocks inside: a super-tile
// of x stays in cache while the thread's panels pass over it, as many at a time as fill half of
// its L2 (panels_in_cache; where they all do, each row's gates of the thread's units are written
// together). Measured where they do not (Intel Xeon, 2 MiB L2, 2 threads; the forward kernels,
// old time / new, 7 alternations in one process): LSTM inference 1.03 at T = 200, B = 64,
// H = 512 (2 MiB of W_ih panels per thread, in two groups) and 1.02 at T = 100, B = 64,
// H = 1024; GRU 1.02. Every row tile sums like a full one, so a row's result does not depend
// on how the rows are split into chunks.
// panels: those of blocks [begin, end) (pack_input_panels); null: the rows times W_ih's rows
// in place (rows_product; direct_products).
template <typename T, int G>
void project_inputs(const InputProjection<T>& p, BlockRange rows, int64_t input_size, int64_t hidden_size,
                    BlockRange blocks, const T* panels) {
  constexpr int L = kLanes<T>;
  const int64_t panel_size = panel_elements<T>(input_size, G);
  const int64_t gates_stride = p.row_stride(G * hidden_size);
  const int64_t group = panels ? panels_in_cache<T>(panel_size) : blocks.end - blocks.begin;
  for (int64_t g0 = blocks.begin; g0 < blocks.end; g0 += group) {
    const int64_t g1 = std::min(blocks.end, g0 + group);
    for (int64_t s0 = rows.begin; s0 < rows.end; s0 += kSuperTile<G>) {
      const int64_t s1 = std::min<int64_t>(rows.end, s0 + kSuperTile<G>);
      for (int64_t u = g0; u < g1; ++u) {
        const int64_t j0 = u * L;
        const int units = units_in_block(hidden_size, j0, L);
        Lanes<T> bias[G];
        for (int g = 0; g < G; ++g) {
          const int64_t at = g * hidden_size + j0;
          if (p.bias && p.bias_hh) {
            bias[g] = load_lanes(p.bias + at, units) + load_lanes(p.bias_hh + at, units);
          } else if (p.bias || p.bias_hh) {
            bias[g] = load_lanes((p.bias ? p.bias : p.bias_hh) + at, units);
          } else {
            bias[g] = Lanes<T>(T(0));
          }
        }
        auto store = [&](int64_t row, const T (&gates)[G][L]) {
          for (int g = 0; g < G; ++g) {
            store_lanes(p.gates_x + (row - rows.begin) * gates_stride + g * hidden_size + j0,
                        Lanes<T>::load(gates[g]) + bias[g], units);
          }
        };
        if (!panels) {
          T out[kSuperTile<G>][G][L];
          rows_product<T, G>(p.x + s0 * input_size, input_size, s1 - s0, p.w_ih, hidden_size, input_size, j0, units,
                             out);
          for (int64_t row = s0; row < s1; ++row) store(row, out[row - s0]);
          continue;
        }
        for_each_product<T, G, kSplit<kRowTile<G>, G>>(p.x, input_size, panels + (u - blocks.begin) * panel_size,
                                                       G * L, s0, s1,
                               [&](auto tile, int64_t row0, const T (&out)[decltype(tile)::value][G][L]) {
          for (int r = 0; r < decltype(tile)::value; ++r) store(row0 + r, out[r]);
        });
      }
    }
  }
}

// The products that multiply straight from the weights' rows (rows_product) instead of
// packing them into panels, which reads and writes every weight once per call and repays
// itself only when the call passes over the weights several times:
// - calls of at most kDirectRows rows in all (steps × batch);
// - one step of at most kDirectBatch rows, with input and hidden sizes of 8 vectors or more:
//   each weight is read once either way;
// - with one row per step (B = 1), the recurrent products of any call whose hidden (and
//   projected) size spans 8 vectors (direct_recurrent_products): per step they read W_hh once
//   either way;
// - short calls of few rows with long weight rows (short_call_reads_rows, below).
// Measured on whole layers in inference (Intel Xeon, AVX-512, 2 threads, I = H, direct /
// packed time). Up to 4 rows, best of 3 rounds alternating two builds: 1 row 0.30 (LSTM,
// H = 1024), 0.36 (GRU, H = 512), 0.45 (LSTM, H = 256); 4 rows 0.81, 0.49, 0.65 (T = 4) and
// 0.83, 0.54, 0.59 (B = 4). One step, best of 5 rounds alternating in one process: B = 5 to 32,
// 0.53–0.87 (H = 256) and 0.37–0.59 (H = 1024); B = 64, 0.96 and 1.06 (H = 256), 0.43 and
// 0.85 (H = 1024); B = 128, 0.91–1.23; at H = 64 (4 vectors) 0.97–0.99 up to B = 8, 1.06–1.13
// at B = 16 and 32. B = 1: T = 8, 0.80 (H = 256), 0.85 (128), 0.80 (1024); T = 100, 0.95–0.98;
// at H = 64, 1.11 at T = 100. More steps of a few rows lose where the weights do not fit in
// L2: with every product of 8 rows direct, an LSTM at H = 1024 took 1.17 (T = 8) and 1.38
// (B = 8) times as long.
constexpr int64_t kDirectRows = 4;
constexpr int64_t kDirectBatch = 32;

template <typename T>
bool direct_products(const SequenceShape& s) {
  const int64_t K = s.proj_size > 0 ? s.proj_size : s.hidden_size;
  const int64_t wide = 8 * kLanes<T>;
  return s.steps * s.batch <= kDirectRows ||
         (s.steps == 1 && s.batch <= kDirectBatch && s.input_size >= wide && s.hidden_size >= wide && K >= wide);
}

// Short calls: at most kShortCallRows = 2·kLanes rows in all (steps × batch) multiply from the
// rows of each weight matrix whose rows take 1 KiB or more (direct_projection for W_ih; in
// direct_recurrent_products W_hh's, and W_hr's with a projection): packing costs a call a fixed
// read and write of the weights, which a few rows do not repay. Measured on the forward kernels
// in inference (Intel Xeon, 2 threads, I = H, both rules alternated in one process, 9 rounds,
// median packed / direct time). B = 1, the projection only (the recurrent products were direct
// already), AVX-512, float: LSTM 1.68, 1.47, 1.20 and 1.14 at T = 5, 8, 16 and 32 (H = 256),
// 1.02 at T = 64 and 0.95 at T = 200; 1.48–1.07 (H = 512) and 1.71–1.18 (H = 1024) at T = 5 to
// 32; GRU 1.25–1.08 (H = 256). AVX2: LSTM 1.49, 1.16, 1.02 and 0.93 at T = 5, 8, 16 and 32
// (H = 256); GRU 1.25–1.01. At H = 128 (512-byte rows) 0.94–1.07 with AVX-512 and 0.84–0.99 with
// AVX2: packing stays. float64: 1.21–2.54 with AVX-512 (T = 5 to 32), 1.11–1.58 with AVX2 (T = 5
// to 16) at H = 256. B = 2 to 8, every product: AVX-512, LSTM H = 256: 1.95–1.23 (B = 2,
// T = 4 to 16), 2.25–1.36 (B = 4, T = 2 to 8), 1.79–1.41 (B = 8, T = 2 and 4); 64 rows 1.10–1.14,
// 128 rows 0.96; H = 512: 1.19–1.75 up to 32 rows, 1.08–1.09 at 64, 0.94 at 128; H = 1024
// 1.42–3.19 up to 32 rows; GRU H = 256: 1.26–2.06 up to 32 rows, 1.19 at 64. AVX2, LSTM
// H = 256: 1.45–1.63 at 8 rows, 1.28–1.40 at 16, 1.05–1.07 at 32, 0.93 at 64.
template <typename T>
constexpr int64_t kShortCallRows = 2 * kLanes<T>;

template <typename T>
bool short_call_reads_rows(const SequenceShape& s, int64_t row_length) {
  return s.steps * s.batch <= kShortCallRows<T> && row_length * int64_t(sizeof(T)) >= 1024;
}

template <typename T>
bool direct_projection(const SequenceShape& s) {
  return direct_products<T>(s) || short_call_reads_rows<T>(s, s.input_size);
}

template <typename T>
bool direct_recurrent_products(const SequenceShape& s) {
  const int64_t K = s.proj_size > 0 ? s.proj_size : s.hidden_size;
  return direct_products<T>(s) || (s.batch == 1 && K >= 8 * kLanes<T> && s.hidden_size >= 8 * kLanes<T>) ||
         (short_call_reads_rows<T>(s, K) && (s.proj_size == 0 || short_call_reads_rows<T>(s, s.hidden_size)));
}

// Bytes of the buffer that takes the input projection chunk by chunk when the caller gives no
// gates_x (inference): a [N, G·H] array of megabytes would be written once and read once,
// from memory and, fresh from the allocator, through page faults; a chunk of steps is read
// back from cache. Chunks of 0.5 to 8 MiB timed within ±4 % of each other (AMD Zen 3, 512 KiB
// L2; T = 100; B = 32 and 256 at H = 256, B = 64 at H = 512); 2 MiB was about 3 % ahead of 4
// and 8 MiB at B = 32. The workspace always holds a chunk of this size.
constexpr int64_t kChunkBytes = int64_t(2) << 20;

// Chunks of about one step, for threads whose panels of W_ih and W_hh fit in their L2
// (projection_chunk_steps): the steps then read each chunk's pre-activations soon after they
// were written.
constexpr int64_t kSmallChunkBytes = int64_t(128) << 10;

// Steps per chunk of the projection: as many as fill `bytes`, at least one.
template <typename T, int G>
int64_t chunk_steps(const SequenceShape& s, int64_t bytes) {
  const int64_t step_bytes = s.batch * G * s.hidden_size * int64_t(sizeof(T));
  return std::clamp<int64_t>(bytes / std::max<int64_t>(1, step_bytes), 1, std::max<int64_t>(1, s.steps));
}

// Steps per chunk for a team of `team` threads. When one thread's share of the W_ih and W_hh
// panels is smaller than its L2 (a core's, where it is known): chunks of kSmallChunkBytes,
// trimmed to whole super-tiles of rows where a chunk holds more than one (project_inputs reads
// the thread's W_ih panels once per super-tile, so a part-filled one costs a whole pass). Else
// chunks of kChunkBytes. Measured on an Intel Xeon (2 MiB L2, 2 threads, T = 100, I = H,
// inference, one process, 11–15 alternations; time with kChunkBytes over time with these):
// B = 32, H = 256: 1.06 (LSTM; one run of three 1.01), 1.06 (GRU); B = 32, H = 128: 1.13 and
// 1.13; LSTM B = 64, H = 256: 1.05; GRU B = 256, H = 256: 1.02; B = 1, H = 256: 1.01 (LSTM),
// 1.00 (GRU; 0.97–0.99 before the trim to whole super-tiles). Where the panels did not fit
// (B = 64, H = 512) small chunks took 1.01–1.04 times as long; there the rule keeps 2 MiB.
// Training projects by the same chunks into gates_x (the saved activations) instead of all
// steps first; the training forward alone, time with one projection over time with chunks:
// LSTM 1.04 (B = 32, H = 256), 1.07 (H = 128), 1.06 (B = 64), 1.03 (T = 200, B = 64, H = 512,
// 2 MiB chunks); GRU 0.98–1.00 (B = 32, H = 256), 1.05 (H = 128), 1.05 (B = 64); a whole LSTM
// training step 1.02 at B = 32 and B = 64 (21 alternations).
template <typename T, int G>
int64_t projection_chunk_steps(const SequenceShape& s, int team) {
  const int64_t K = s.proj_size > 0 ? s.proj_size : s.hidden_size;
  const int64_t panel_bytes = G * s.hidden_size * (s.input_size + K) * int64_t(sizeof(T)) / std::max(team, 1);
  const int64_t l2 = l2_cache_bytes();
  if (l2 <= 0 || panel_bytes >= l2) return chunk_steps<T, G>(s, kChunkBytes);
  const int64_t steps = chunk_steps<T, G>(s, kSmallChunkBytes);
  const int64_t whole = steps * s.batch / kSuperTile<G> * kSuperTile<G> / s.batch;
  return whole > 0 ? whole : steps;
}

// ---------------------------------------------------------------------------------------------
// Forward. Cell interface:
//   using Scalar;  static constexpr int kGates;  static constexpr bool kProjected;
//   SequenceShape shape;  const Scalar* w_hh ([G·H, K]);  const Scalar* w_hr ([P, H] if kProjected)
//   InputProjection<Scalar>& input();  (gates_x null: the job gives it a buffer and projects by chunks)
//   const Scalar* h0;  const Scalar* y;                     ([B, K], [N, K])
//   void attach(WorkspaceCarver&, const StepSchedule*);     its state arrays, and the schedule
//   template <int R> void step(int64_t t, int64_t row0, const Scalar* h_prev, bool fresh,
//                              int64_t j0, int units, const Scalar (*rec)[kGates][kLanes]);
//     rec ([R][kGates][kLanes]) = h_{t-1} W_hhᵀ for rows row0.., gates, units j0..j0+units-1;
//     h_prev: [B, K], the rows' h_{t-1} (h0 when fresh: the rows start here from their initial
//     state).
//   kProjected: const Scalar* projection_input() ([B, H], o ⊙ tanh c_t of the step);
//     template <int R> void project(int64_t t, int64_t row0, int64_t p0, int units,
//                                   const Scalar (*h)[1][kLanes]);   h_t ([R][1][kLanes]) for units p0.. of P
template <class Cell>
struct ForwardJob {
  using T = typename Cell::Scalar;
  Cell cell;
  bool chunk_buffer;  // the projection goes into a buffer of the workspace that holds one chunk
  bool direct;   // the input projection straight from W_ih's rows, no panels (direct_projection)
  bool direct_recurrence;  // W_hh's and W_hr's products straight from their rows (direct_recurrent_products)
  StepSchedule schedule;
  T* panels = nullptr;             // W_hh, per block of hidden units
  T* input_panels = nullptr;       // W_ih, per block of hidden units
  T* projection_panels = nullptr;  // W_hr, per block of projected units

  // team: the threads that will run the job (threads_for_cell), for the chunks' size.
  ForwardJob(const Cell& c, const SequenceLayout& layout, WorkspaceCarver& w, int team)
      : cell(c),
        chunk_buffer(cell.input().gates_x == nullptr),
        direct(direct_projection<T>(c.shape)),
        direct_recurrence(direct_recurrent_products<T>(c.shape)),
        schedule(c.shape, layout, projection_chunk_steps<T, Cell::kGates>(c.shape, team), chunk_buffer) {
    constexpr int G = Cell::kGates;
    const SequenceShape& s = c.shape;
    const int64_t K = s.proj_size > 0 ? s.proj_size : s.hidden_size;
    // Always carved, and for the largest chunk, so that the workspace's size depends on neither
    // the arguments' presence nor the machine.
    T* chunk = w.take<T>(chunk_steps<T, G>(s, kChunkBytes) * s.batch * G * s.hidden_size);
    if (chunk_buffer) {
      cell.input().gates_x = chunk;
      cell.input().gates_stride = 0;
    }
    panels = w.take<T>(unit_blocks(s.hidden_size, kLanes<T>) * panel_elements<T>(K, G));
    input_panels = w.take<T>(unit_blocks(s.hidden_size, kLanes<T>) * panel_elements<T>(s.input_size, G));
    if constexpr (Cell::kProjected) {
      projection_panels = w.take<T>(unit_blocks(s.proj_size, kLanes<T>) * panel_elements<T>(s.hidden_size, 1));
    }
    cell.attach(w, &schedule);
  }
};

template <class Cell>
void forward_thread(void* context, int thread, int team_size, SpinBarrier& barrier) {
  using T = typename Cell::Scalar;
  constexpr int G = Cell::kGates;
  constexpr int L = kLanes<T>;
  auto& job = *static_cast<ForwardJob<Cell>*>(context);
  Cell& cell = job.cell;
  const StepSchedule& steps = job.schedule;
  const int64_t H = cell.shape.hidden_size;
  const int64_t P = cell.shape.proj_size;
  const int64_t K = Cell::kProjected ? P : H;
  const int64_t panel_size = panel_elements<T>(K, G);
  const BlockRange mine = blocks_of_thread(unit_blocks(H, L), team_size, thread);
  // Each thread projects the inputs of its own units: its time loop reads only those, so the
  // loop can start, and a chunk's projection can overwrite the one before, without a barrier.
  const int64_t I = cell.shape.input_size;
  T* const input_panels = job.input_panels + mine.begin * panel_elements<T>(I, G);
  // A chunk's rows go to the start of the chunk buffer, or to their own rows of gates_x.
  auto project = [&](BlockRange rows, BlockRange blocks) {
    InputProjection<T> chunk = cell.input();
    if (!job.chunk_buffer) chunk.gates_x += rows.begin * chunk.row_stride(G * H);
    project_inputs<T, G>(chunk, rows, I, H, blocks, job.direct ? nullptr : input_panels);
  };
  BlockRange mine_projected{0, 0};
  if constexpr (Cell::kProjected) mine_projected = blocks_of_thread(unit_blocks(P, L), team_size, thread);
  const int64_t projection_panel_size = panel_elements<T>(H, 1);
  // One step with panels: each panel serves one pass over the step's rows, so a block's panels
  // are packed just before that pass, into the first slot of the thread's part of the
  // workspace, where they stay in cache; packing them all first wrote W_ih and W_hh out and
  // read them back (LSTM, B = 64: 0.83-0.89 of the time at H = 256 to 1024, Intel Xeon).
  const bool pack_each_block = steps.steps() == 1 && !job.direct_recurrence;
  if (!job.direct && !pack_each_block) pack_input_panels<T, G>(cell.input(), I, H, mine, input_panels);
  if (!job.direct_recurrence && !pack_each_block) {
    for (int64_t u = mine.begin; u < mine.end; ++u) {
      pack_rows_panel(cell.w_hh, H, K, G, u * L, job.panels + u * panel_size);
    }
    if constexpr (Cell::kProjected) {
      for (int64_t v = mine_projected.begin; v < mine_projected.end; ++v) {
        pack_rows_panel(cell.w_hr, P, H, 1, v * L, job.projection_panels + v * projection_panel_size);
      }
    }
  }
  unsigned epoch = 0;  // this thread's count of barrier waits (SpinBarrier::wait)
  for (int64_t k = 0; k < steps.steps(); ++k) {
    if (steps.starts_chunk(k) && !pack_each_block) project(steps.chunk_rows(k), mine);
    const int64_t t = steps.at(k);
    const int64_t continued = steps.continued(t);
    const T* h_before = continued > 0 ? cell.y + steps.offset(steps.before(t)) * K : nullptr;
    for (int64_t u = mine.begin; u < mine.end; ++u) {
      const int64_t j0 = u * L;
      const int units = units_in_block(H, j0, L);
      if (job.direct_recurrence) {
        // Rows [begin, end), all continued or all fresh, a super-tile at a time.
        auto direct = [&](const T* h_prev, bool fresh, int64_t begin, int64_t end) {
          // B = 1, the streaming case, calls the cell without the super-tile loop, which (even
          // without copies) took 1.03-1.07 times as long at T = 100, B = 1, H = 128 and 256.
          if (end - begin == 1) {
            T rec[1][G][L];
            rows_product<T, G>(h_prev + begin * K, K, 1, cell.w_hh, H, K, j0, units, rec);
            cell.template step<1>(t, begin, h_prev, fresh, j0, units, rec);
            return;
          }
          for (int64_t s0 = begin; s0 < end; s0 += kSuperTile<G>) {
            const int64_t s1 = std::min<int64_t>(end, s0 + kSuperTile<G>);
            T rec[kSuperTile<G>][G][L];
            rows_product<T, G>(h_prev + s0 * K, K, s1 - s0, cell.w_hh, H, K, j0, units, rec);
            for_each_row_tile<G>(s1, s0, [&](auto rows, int64_t row0) {
              cell.template step<decltype(rows)::value>(t, row0, h_prev, fresh, j0, units, rec + (row0 - s0));
            });
          }
        };
        direct(h_before, false, 0, continued);
        direct(cell.h0, true, continued, steps.rows(t));
        continue;
      }
      const T* panel = job.panels + u * panel_size;
      if (pack_each_block) {
        pack_input_panels<T, G>(cell.input(), I, H, {u, u + 1}, input_panels);
        project(steps.chunk_rows(0), {u, u + 1});
        T* slot = job.panels + mine.begin * panel_size;
        pack_rows_panel(cell.w_hh, H, K, G, j0, slot);
        panel = slot;
      }
      auto run = [&](const T* h_prev, bool fresh) {
        return [&, h_prev, fresh](auto rows, int64_t row0, const T (&rec)[decltype(rows)::value][G][L]) {
          cell.template step<decltype(rows)::value>(t, row0, h_prev, fresh, j0, units, rec);
        };
      };
      for_each_product<T, G>(h_before, K, panel, G * L, 0, continued, run(h_before, false));
      for_each_product<T, G>(cell.h0, K, panel, G * L, continued, steps.rows(t), run(cell.h0, true));
    }
    if constexpr (Cell::kProjected) {
      barrier.wait(thread, &epoch);  // the projection reads o ⊙ tanh c of every hidden unit
      for (int64_t v = mine_projected.begin; v < mine_projected.end; ++v) {
        const int64_t p0 = v * L;
        const int units = units_in_block(P, p0, L);
        auto run = [&](auto rows, int64_t row0, const T (*h)[1][L]) {
          cell.template project<decltype(rows)::value>(t, row0, p0, units, h);
        };
        if (job.direct_recurrence) {
          for (int64_t s0 = 0; s0 < steps.rows(t); s0 += kSuperTile<1>) {
            const int64_t s1 = std::min<int64_t>(steps.rows(t), s0 + kSuperTile<1>);
            T h[kSuperTile<1>][1][L];
            rows_product<T, 1>(cell.projection_input() + s0 * H, H, s1 - s0, cell.w_hr, P, H, p0, units, h);
            for_each_row_tile<1>(s1, s0, [&](auto rows, int64_t row0) { run(rows, row0, h + (row0 - s0)); });
          }
        } else {
          const T* panel = job.projection_panels + v * projection_panel_size;
          if (pack_each_block) {
            T* slot = job.projection_panels + mine_projected.begin * projection_panel_size;
            pack_rows_panel(cell.w_hr, P, H, 1, p0, slot);
            panel = slot;
          }
          for_each_product<T, 1>(cell.projection_input(), H, panel, L, 0, steps.rows(t), run);
        }
      }
    }
    if (k + 1 < steps.steps()) barrier.wait(thread, &epoch);
  }
}

template <class Cell>
int threads_for_cell(const Cell& cell, int num_threads) {
  using T = typename Cell::Scalar;
  const SequenceShape& s = cell.shape;
  const int64_t K = s.proj_size > 0 ? s.proj_size : s.hidden_size;
  const int64_t work = s.batch * (Cell::kGates * s.hidden_size * K + s.proj_size * s.hidden_size);
  return threads_for(unit_blocks(s.hidden_size, kLanes<T>), work, num_threads);
}

template <class Cell>
size_t forward_workspace_bytes(const Cell& cell) {
  WorkspaceCarver w(nullptr);
  ForwardJob<Cell> job(cell, SequenceLayout{}, w, 1);
  return w.bytes();
}

template <class Cell>
void run_forward(const Cell& cell, const SequenceLayout& layout, void* workspace, int num_threads) {
  const int team = threads_for_cell(cell, num_threads);
  WorkspaceCarver w(workspace);
  ForwardJob<Cell> job(cell, layout, w, team);
  run_team(team, &forward_thread<Cell>, &job);
}

// Count sums per unit over all rows of a backward's gate gradients (the bias gradients), kept
// in double in the workspace, each array padded to whole blocks of units. The thread that runs
// a unit block's gate math adds each tile's rows (summed in T: at most 8 of them) as it goes,
// in the order the steps and row tiles are visited, so the sums are bit-identical for every
// thread count. That replaces a pass over dgates after the kernel (torch's dgates.sum(0),
// about 1 ms of a 42 ms LSTM training step at T = 100, B = 32, H = 256; two in the GRU's) by
// under 1 % more time in the kernel (at B = 1 on two threads 5-8 %, 30 µs; README, Speed).
template <typename T, int Count>
class ColumnSums {
 public:
  void attach(WorkspaceCarver& w, int64_t hidden_size) {
    padded_ = unit_blocks(hidden_size, kLanes<T>) * kLanes<T>;
    sums_ = w.take<double>(Count * padded_);
  }
  void zero(int64_t j0) {
    for (int s = 0; s < Count; ++s) std::fill_n(sums_ + s * padded_ + j0, kLanes<T>, 0.0);
  }
  template <int R>
  FG_ALWAYS_INLINE void add(int s, int64_t j0, const Lanes<T, R>& x) { add_rows(sums_ + s * padded_ + j0, x); }
  // Sum s of units j0.., rounded to T, at out[0..units).
  void write(int s, int64_t j0, int units, T* out) const {
    for (int l = 0; l < units; ++l) out[l] = static_cast<T>(sums_[s * padded_ + j0 + l]);
  }

 private:
  double* sums_ = nullptr;
  int64_t padded_ = 0;
};

// Blocks of units of h per panel of the backward's product with W_hh (pack_columns_panel):
// as many as the forward has gates, so both products use the same register tile.
constexpr int kBackwardBlocks = 4;

// ---------------------------------------------------------------------------------------------
// Backward: the steps in the reverse of the forward pass's order. Cell interface:
//   using Scalar;  static constexpr int kGates;  static constexpr bool kProjected;
//   SequenceShape shape;  const Scalar* w_hh ([G·H, K]);  const Scalar* w_hr ([P, H] if kProjected)
//   void attach(WorkspaceCarver&, const StepSchedule*);
//   const Scalar* recurrent_gradient(int64_t t);   ([rows(t), G·H]: d(h_{t-1} W_hhᵀ) of step t)
//   template <int R> void step(int64_t t, int64_t row0, int64_t j0, int units, const Scalar (*rec)[kLanes]);
//     the cell's backward for rows row0.. and hidden units j0..; rec: without a projection the
//     recurrent part of dL/dh_t (recurrent_gradient(after(t)) · W_hh; null for rows that end at
//     step t), with one dL/dm_t = dL/dh_t · W_hr.
//   bool wants_dh0() const;   whether the caller wants dL/dh0 (else the product for it is skipped)
//   void zero_sums(int64_t j0);  void write_sums(int64_t j0, int units);   the column sums
//     (ColumnSums) of the blocks whose gate math (step) a thread runs: zeroed before its first
//     step, written out after its last
//   template <int R> void initial(int64_t row0, int64_t j0, int units, const Scalar (*rec)[kLanes]);
//     rows that started from their initial state at the step visited last: without a
//     projection rec = their recurrent_gradient · W_hh, the recurrent part of dL/dh0; rec is
//     null with a projection, or when dL/dh0 is not wanted (the cell writes what it can
//     without rec: an LSTM's dL/dc0).
//   kProjected: const Scalar* hidden_gradient() ([B, P], dL/dh_t of the step);
//     template <int R> void projected_step(int64_t t, int64_t row0, int64_t p0, int units,
//                                          const Scalar (*rec)[kLanes]);  dL/dh_t, units p0.. of P
//     template <int R> void projected_initial(int64_t row0, int64_t p0, int units, const Scalar (*rec)[kLanes]);
template <class Cell>
struct BackwardJob {
  using T = typename Cell::Scalar;
  Cell cell;
  StepSchedule schedule;
  T* panels = nullptr;             // columns of W_hh, per group of kBackwardBlocks blocks of units of h
  T* projection_panels = nullptr;  // columns of W_hr, per block of hidden units

  BackwardJob(const Cell& c, const SequenceLayout& layout, WorkspaceCarver& w)
      : cell(c), schedule(c.shape, layout, c.shape.steps, false) {
    const SequenceShape& s = c.shape;
    const int64_t K = s.proj_size > 0 ? s.proj_size : s.hidden_size;
    panels = w.take<T>(backward_groups(K) * panel_elements<T>(Cell::kGates * s.hidden_size, kBackwardBlocks));
    if constexpr (Cell::kProjected) {
      projection_panels = w.take<T>(unit_blocks(s.hidden_size, kLanes<T>) * panel_elements<T>(s.proj_size, 1));
    }
    cell.attach(w, &schedule);
  }

  // Groups of kBackwardBlocks blocks that cover K units of h.
  static int64_t backward_groups(int64_t K) { return unit_blocks(unit_blocks(K, kLanes<T>), kBackwardBlocks); }
};

// Calls run(b, rec) for each of the first `blocks` blocks b of a product's
// [R][kBackwardBlocks][L] result, with rec the block's [R][L] part.
template <typename T, int R, class Run>
FG_ALWAYS_INLINE void for_each_block(const T (&out)[R][kBackwardBlocks][kLanes<T>], int blocks, Run&& run) {
  constexpr int L = kLanes<T>;
  for (int b = 0; b < blocks; ++b) {
    T rec[R][L];
    for (int r = 0; r < R; ++r) std::memcpy(rec[r], out[r][b], sizeof rec[r]);
    run(b, &rec[0]);
  }
}

template <class Cell>
void backward_thread(void* context, int thread, int team_size, SpinBarrier& barrier) {
  using T = typename Cell::Scalar;
  constexpr int L = kLanes<T>;
  constexpr int U = kBackwardBlocks;
  auto& job = *static_cast<BackwardJob<Cell>*>(context);
  Cell& cell = job.cell;
  const StepSchedule& steps = job.schedule;
  const int64_t H = cell.shape.hidden_size;
  const int64_t P = cell.shape.proj_size;
  const int64_t K = Cell::kProjected ? P : H;
  const int64_t GH = Cell::kGates * H;
  const int64_t panel_size = panel_elements<T>(GH, U);
  const int64_t blocks_h = unit_blocks(K, L);
  const BlockRange mine = blocks_of_thread(unit_blocks(H, L), team_size, thread);
  // Groups of blocks of units of h (H, or P with a projection) this thread owns for the
  // product with W_hh.
  const BlockRange groups = blocks_of_thread(BackwardJob<Cell>::backward_groups(K), team_size, thread);
  // Each panel is W_hh (W_hr) itself where columns_in_place allows, else a packed copy.
  const int64_t batch = cell.shape.batch;
  const int64_t passes = steps.steps() * unit_blocks(batch, kSuperTile<U>);
  const int64_t projection_passes = steps.steps() * unit_blocks(batch, kSuperTile<1>);
  auto group_in_place = [&](int64_t g) { return columns_in_place(passes, K, U, g * U * L, L); };
  auto block_in_place = [&](int64_t u) { return columns_in_place(projection_passes, H, 1, u * L, L); };
  // One step: W_hh's products are dh0's only, if it is wanted, and each group's panel serves one
  // pass over the rows; so a group's panel is packed just before that pass, into the first slot
  // of the thread's panels, where it stays in cache. Packing them all first wrote W_hh out of
  // the caches and back, and did so even when dh0 was not wanted (LSTM, B = 64, H = 512, no
  // dh0: 248-255 µs a backward, now 44).
  const bool pack_each_group = steps.steps() == 1;
  if (!pack_each_group) {
    for (int64_t g = groups.begin; g < groups.end; ++g) {
      if (!group_in_place(g)) pack_columns_panel(cell.w_hh, K, GH, U, g * U * L, job.panels + g * panel_size);
    }
  }
  if constexpr (Cell::kProjected) {
    for (int64_t u = mine.begin; u < mine.end; ++u) {
      if (!block_in_place(u)) {
        pack_columns_panel(cell.w_hr, H, P, 1, u * L, job.projection_panels + u * panel_elements<T>(P, 1));
      }
    }
  }
  // Blocks of units of H whose gate math this thread runs.
  const BlockRange stepped = Cell::kProjected ? mine : BlockRange{groups.begin * U, std::min(groups.end * U, blocks_h)};
  for (int64_t u = stepped.begin; u < stepped.end; ++u) cell.zero_sums(u * L);
  unsigned epoch = 0;  // this thread's count of barrier waits (SpinBarrier::wait)
  const int64_t T_ = steps.steps();
  // Pass k runs step t = the (k+1)-th from the end of the forward order, after the pass of step
  // p = after(t); pass T only finishes the rows that started at the first step.
  for (int64_t k = 0; k <= T_; ++k) {
    const int64_t t = k < T_ ? steps.at(T_ - 1 - k) : -1;
    const int64_t p = k > 0 ? steps.at(T_ - k) : -1;
    const T* later = p >= 0 ? cell.recurrent_gradient(p) : nullptr;
    const bool products = (t >= 0 && steps.carried(t) > 0) ||
                          (p >= 0 && cell.wants_dh0() && steps.continued(p) < steps.rows(p));
    for (int64_t i = 0; i < groups.end - groups.begin; ++i) {
      const int64_t g = serpentine(groups, k, i);
      const bool in_place = group_in_place(g);
      const T* panel = in_place ? cell.w_hh + g * U * L : job.panels + g * panel_size;
      if (pack_each_group && !in_place && products) {
        T* slot = job.panels + groups.begin * panel_size;
        pack_columns_panel(cell.w_hh, K, GH, U, g * U * L, slot);
        panel = slot;
      }
      const int64_t panel_stride = in_place ? K : U * L;
      const int blocks = static_cast<int>(std::min<int64_t>(U, blocks_h - g * U));
      auto block_start = [&](int b) { return (g * U + b) * L; };
      auto gradient = [&](auto rows, int64_t row0, int b, const T(*rec)[L]) {
        constexpr int R = decltype(rows)::value;
        const int64_t j0 = block_start(b);
        if constexpr (Cell::kProjected) {
          cell.template projected_step<R>(t, row0, j0, units_in_block(K, j0, L), rec);
        } else {
          cell.template step<R>(t, row0, j0, units_in_block(K, j0, L), rec);
        }
      };
      auto initial = [&](auto rows, int64_t row0, int b, const T(*rec)[L]) {
        constexpr int R = decltype(rows)::value;
        const int64_t j0 = block_start(b);
        if constexpr (Cell::kProjected) {
          cell.template projected_initial<R>(row0, j0, units_in_block(K, j0, L), rec);
        } else {
          cell.template initial<R>(row0, j0, units_in_block(K, j0, L), rec);
        }
      };
      if (t >= 0) {
        const int64_t carried = steps.carried(t);
        for_each_product<T, U>(later, GH, panel, panel_stride, 0, carried,
                               [&](auto rows, int64_t row0, const T (&rec)[decltype(rows)::value][U][L]) {
                                 for_each_block(rec, blocks, [&](int b, const T(*r)[L]) { gradient(rows, row0, b, r); });
                               });
        for_each_row_tile<1>(steps.rows(t), carried, [&](auto rows, int64_t row0) {
          for (int b = 0; b < blocks; ++b) gradient(rows, row0, b, nullptr);
        });
      }
      if (p >= 0 && cell.wants_dh0()) {
        for_each_product<T, U>(later, GH, panel, panel_stride, steps.continued(p), steps.rows(p),
                               [&](auto rows, int64_t row0, const T (&rec)[decltype(rows)::value][U][L]) {
                                 for_each_block(rec, blocks, [&](int b, const T(*r)[L]) { initial(rows, row0, b, r); });
                               });
      } else if (p >= 0 && !Cell::kProjected) {
        for_each_row_tile<1>(steps.rows(p), steps.continued(p), [&](auto rows, int64_t row0) {
          for (int b = 0; b < blocks; ++b) initial(rows, row0, b, nullptr);
        });
      }
    }
    if constexpr (Cell::kProjected) {
      if (t >= 0) barrier.wait(thread, &epoch);  // dL/dm_t needs dL/dh_t of every projected unit
      for (int64_t u = mine.begin; u < mine.end; ++u) {
        const bool in_place = block_in_place(u);
        const T* panel = in_place ? cell.w_hr + u * L : job.projection_panels + u * panel_elements<T>(P, 1);
        const int64_t j0 = u * L;
        const int units = units_in_block(H, j0, L);
        if (t >= 0) {
          for_each_product<T, 1>(cell.hidden_gradient(), P, panel, in_place ? H : L, 0, steps.rows(t),
                                 [&](auto rows, int64_t row0, const T (&dm)[decltype(rows)::value][1][L]) {
                                   cell.template step<decltype(rows)::value>(t, row0, j0, units,
                                                                             &dm[0][0]);
                                 });
        }
        if (p >= 0) {
          for_each_row_tile<1>(steps.rows(p), steps.continued(p), [&](auto rows, int64_t row0) {
            cell.template initial<decltype(rows)::value>(row0, j0, units, nullptr);
          });
        }
      }
    }
    if (k < T_) barrier.wait(thread, &epoch);
  }
  for (int64_t u = stepped.begin; u < stepped.end; ++u) cell.write_sums(u * L, units_in_block(H, u * L, L));
  finish_streams();  // the GRU's dgates_x (stream_rows)
}

template <class Cell>
size_t backward_workspace_bytes(const Cell& cell) {
  WorkspaceCarver w(nullptr);
  BackwardJob<Cell> job(cell, SequenceLayout{}, w);
  return w.bytes();
}

template <class Cell>
void run_backward(const Cell& cell, const SequenceLayout& layout, void* workspace, int num_threads) {
  WorkspaceCarver w(workspace);
  BackwardJob<Cell> job(cell, layout, w);
  run_team(threads_for_cell(cell, num_threads), &backward_thread<Cell>, &job);
}

}  // namespace fastgates::cpu::FG_CPU_ISA
