// The backward passes' time-parallel products (kernels.h, Matmul) as GEMMs with the recurrent
// product's packing and micro-kernel: b is packed into panels of kMatmulBlocks blocks of
// kLanes columns, and for_each_product multiplies rows of a (or, with a transposed a, copied
// columns of it) by a panel. Included only by the per-ISA kernel builds.
#pragma once

#include <algorithm>
#include <cstring>

#include "cpu/kernels.h"
#include "cpu/lanes.h"
#include "cpu/recurrence.h"
#include "cpu/recurrent_product.h"
#include "cpu/thread_team.h"

namespace fastgates::cpu::FG_CPU_ISA {

// Blocks of kLanes columns of b per panel: the register tile of the recurrent products.
constexpr int kMatmulBlocks = 4;
// Rows of a super-tile of c: the rows for_each_product keeps in cache while a panel passes.
constexpr int64_t kMatmulRows = kSuperTile<kMatmulBlocks>;
// With a transposed a, the inner dimension (rows of a and b) is taken in slabs of this many
// rows: a slab's panels (kSlabRows × n) and the copy of a's slab for kSlabTiles super-tiles
// stay in cache, and c is read and written once per slab.
constexpr int64_t kSlabRows = 256;
// Super-tiles of c's rows whose part of a's slab is copied at once: each of the slab's rows of
// a is read in runs of kSlabTiles · kMatmulRows elements (512 bytes in float with AVX-512).
constexpr int64_t kSlabTiles = 4;

template <typename T>
struct MatmulJob {
  Matmul<T> args;
  int64_t panels;              // panels covering the n columns of b
  T* packed = nullptr;         // not transposed: every panel of b, [panels][k][blocks][kLanes];
                               // transposed: per thread, one slab's panels
  T* a_columns = nullptr;      // transposed: per thread, the columns of a's slab for kSlabTiles
                               // super-tiles, [kSlabTiles][kSlabRows][kMatmulRows]
  int threads;

  MatmulJob(const Matmul<T>& a, WorkspaceCarver& w, int team)
      : args(a), panels(unit_blocks(unit_blocks(a.n, kLanes<T>), kMatmulBlocks)), threads(team) {
    if (args.transpose_a) {
      packed = w.take<T>(threads * panels * panel_elements<T>(kSlabRows, kMatmulBlocks));
      a_columns = w.take<T>(threads * kSlabTiles * kSlabRows * kMatmulRows);
    } else {
      packed = w.take<T>(panels * panel_elements<T>(args.k, kMatmulBlocks));
    }
  }

  // Super-tiles of kMatmulRows rows covering the m rows of c.
  int64_t row_tiles() const { return unit_blocks(args.m, static_cast<int>(kMatmulRows)); }
};

// The units of work the threads split: panels (columns of c), or super-tiles of c's rows with a
// transposed a.
template <typename T>
int64_t matmul_work_items(const Matmul<T>& m) {
  return m.transpose_a ? unit_blocks(m.m, static_cast<int>(kMatmulRows))
                       : unit_blocks(unit_blocks(m.n, kLanes<T>), kMatmulBlocks);
}

// Stores one product tile into rows row0.. of c, columns of panel p: c = sum, or c += sum when
// `add` (only the first `n` columns exist).
template <typename T, int R>
FG_ALWAYS_INLINE void store_tile(T* c, int64_t n, int64_t row0, int64_t p, bool add,
                                 const T (&sum)[R][kMatmulBlocks][kLanes<T>]) {
  constexpr int L = kLanes<T>;
  for (int r = 0; r < R; ++r) {
    T* row = c + (row0 + r) * n;
    for (int b = 0; b < kMatmulBlocks; ++b) {
      const int64_t j0 = (p * kMatmulBlocks + b) * L;
      if (j0 >= n) break;
      const int units = units_in_block(n, j0, L);
      Lanes<T> value = Lanes<T>::load(sum[r][b]);
      if (add) value = value + load_lanes(row + j0, units);
      store_lanes(row + j0, value, units);
    }
  }
}

// c (+)= a · b: each thread takes the panels of its own columns of c a group that fits half of
// its L2 at a time (panels_in_cache), packs them and passes them over every super-tile of a's
// rows (rows outside, panels inside, as project_inputs). Without groups, a thread's panels that
// did not fit came from L3 for every super-tile: at m = 12800, n = 512, k = 2048 (dx at
// T = 200, B = 64, H = 512; four panels of 512 KiB a thread) the groups made it 1.06–1.11 times
// as fast (Intel Xeon, 2 MiB L2, both builds in one harness, 11 alternations), and packing each
// group just before its pass, not all panels first, 1.03–1.04 more; 1.00–1.01 where the
// panels fit.
template <typename T>
void matmul_thread(const MatmulJob<T>& job, int thread, int team_size) {
  const Matmul<T>& m = job.args;
  const int64_t panel_size = panel_elements<T>(m.k, kMatmulBlocks);
  const BlockRange mine = blocks_of_thread(job.panels, team_size, thread);
  constexpr int width = kMatmulBlocks * kLanes<T>;
  // Each panel is b itself where columns_in_place allows (a single super-tile of a's rows),
  // else a packed copy.
  const int64_t passes = unit_blocks(m.m, kMatmulRows);
  auto in_place = [&](int64_t p) { return columns_in_place(passes, m.n, kMatmulBlocks, p * width, kLanes<T>); };
  const int64_t group = panels_in_cache<T>(panel_size);
  for (int64_t g0 = mine.begin; g0 < mine.end; g0 += group) {
    const int64_t g1 = std::min(mine.end, g0 + group);
    for (int64_t p = g0; p < g1; ++p) {
      if (!in_place(p)) pack_columns_panel(m.b, m.n, m.k, kMatmulBlocks, p * width, job.packed + p * panel_size);
    }
    for (int64_t s0 = 0; s0 < m.m; s0 += kMatmulRows) {
      const int64_t s1 = std::min(m.m, s0 + kMatmulRows);
      for (int64_t p = g0; p < g1; ++p) {
        const bool b_in_place = in_place(p);
        for_each_product<T, kMatmulBlocks>(m.a, m.k, b_in_place ? m.b + p * width : job.packed + p * panel_size,
                                           b_in_place ? m.n : width, s0, s1,
                                           [&](auto rows, int64_t row0, const auto& sum) {
                                             store_tile<T, decltype(rows)::value>(m.c, m.n, row0, p, m.accumulate, sum);
                                           });
      }
    }
  }
}

// a_columns[t][kk][r] = a[(k0 + kk)·m + (first + t)·kMatmulRows + r] for the slab's kk < slab
// and the super-tiles first .. first + tiles - 1 (r < kMatmulRows, fewer in c's last one): the
// columns of a that those super-tiles of c need, read along a's rows. Reading a in place, or
// transposing it, walks it down its columns, a page apart per element at m = 1024; this reads
// a row's part for all the tiles in one run. Measured against transposing each super-tile's
// slab (Intel Xeon, 2 threads, old time / new, median of 11 alternations): 1.13–1.15 at
// m = 1024, n = 256, k = 3200 (the LSTM's dW at T·B = 3200, H = 256), 1.07 at m = 768 (the
// GRU's), 1.12 at m = 2048, n = 512, k = 12800; 1.07 at m = 1024, k = 100.
template <typename T>
void copy_slab_columns(const Matmul<T>& m, int64_t k0, int64_t slab, int64_t first, int64_t tiles, T* a_columns) {
  const int64_t width = std::min(tiles * kMatmulRows, m.m - first * kMatmulRows);
  const int64_t whole = width / kMatmulRows * kMatmulRows;
  for (int64_t kk = 0; kk < slab; ++kk) {
    const T* row = m.a + (k0 + kk) * m.m + first * kMatmulRows;
    T* column = a_columns + kk * kMatmulRows;
    for (int64_t r = 0; r < whole; r += kMatmulRows) {  // a constant size: copied inline
      std::memcpy(column + r * slab, row + r, sizeof(T) * kMatmulRows);
    }
    if (whole < width) std::memcpy(column + whole * slab, row + whole, sizeof(T) * (width - whole));
  }
}

// c (+)= aᵀ · b, a [k, m]: the inner dimension in slabs of kSlabRows rows, added to c slab after
// slab in order. Each thread owns super-tiles of c's rows; per slab it packs all of b's panels
// for itself (a k·n copy against the thread's k·n·m/threads multiply-adds), then copies the
// slab's part of a for kSlabTiles of its super-tiles at a time and multiplies it, column-major
// as it is in a, by every panel. A super-tile's result does not depend on which thread or
// group takes it.
template <typename T>
void matmul_transposed_thread(const MatmulJob<T>& job, int thread, int team_size) {
  const Matmul<T>& m = job.args;
  const BlockRange mine = blocks_of_thread(job.row_tiles(), team_size, thread);
  T* packed = job.packed + thread * job.panels * panel_elements<T>(kSlabRows, kMatmulBlocks);
  T* a_columns = job.a_columns + thread * kSlabTiles * kSlabRows * kMatmulRows;
  for (int64_t k0 = 0; k0 < m.k; k0 += kSlabRows) {
    const int64_t slab = std::min(kSlabRows, m.k - k0);
    const int64_t panel_size = panel_elements<T>(slab, kMatmulBlocks);
    for (int64_t p = 0; p < job.panels; ++p) {
      pack_columns_panel(m.b + k0 * m.n, m.n, slab, kMatmulBlocks, p * kMatmulBlocks * kLanes<T>,
                         packed + p * panel_size);
    }
    const bool add = m.accumulate || k0 > 0;
    for (int64_t first = mine.begin; first < mine.end; first += kSlabTiles) {
      const int64_t tiles = std::min(kSlabTiles, mine.end - first);
      copy_slab_columns(m, k0, slab, first, tiles, a_columns);
      for (int64_t tile = first; tile < first + tiles; ++tile) {
        const int64_t s0 = tile * kMatmulRows;
        const int64_t rows = std::min(kMatmulRows, m.m - s0);
        const T* columns = a_columns + (tile - first) * slab * kMatmulRows;
        for (int64_t p = 0; p < job.panels; ++p) {
          for_each_product<T, kMatmulBlocks, 0, kMatmulRows>(
              columns, slab, packed + p * panel_size, kMatmulBlocks * kLanes<T>, 0, rows,
              [&](auto tile_rows, int64_t row0, const auto& sum) {
                store_tile<T, decltype(tile_rows)::value>(m.c, m.n, s0 + row0, p, add, sum);
              });
        }
      }
    }
  }
}

template <typename T>
void matmul_team_job(void* context, int thread, int team_size, SpinBarrier&) {
  const auto& job = *static_cast<const MatmulJob<T>*>(context);
  if (job.args.transpose_a) {
    matmul_transposed_thread(job, thread, team_size);
  } else {
    matmul_thread(job, thread, team_size);
  }
}

// Threads the call carves workspace for and runs on.
template <typename T>
int matmul_threads(const Matmul<T>& m) {
  return threads_for(matmul_work_items(m), m.m * m.n * m.k, m.num_threads);
}

template <typename T>
size_t matmul_bytes(const Matmul<T>& m) {
  WorkspaceCarver w(nullptr);
  MatmulJob<T> job(m, w, matmul_threads(m));
  return w.bytes();
}

template <typename T>
void run_matmul(const Matmul<T>& m) {
  WorkspaceCarver w(m.workspace);
  const MatmulJob<T> job(m, w, matmul_threads(m));
  run_team(job.threads, &matmul_team_job<T>, const_cast<MatmulJob<T>*>(&job));
}

}  // namespace fastgates::cpu::FG_CPU_ISA
