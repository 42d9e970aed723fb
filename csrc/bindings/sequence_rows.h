// The rows of a call's sequence arrays, shared by the CPU and CUDA bindings: [T, B, X] when
// padded, [N, X] when packed (batch_sizes given: torch's PackedSequence layout, checked here so
// that the kernels never index out of bounds).
#pragma once

#include <cstdint>

#include "bindings/tensor_view.h"

namespace fastgates::bindings {

// Size `index` of `t` after checking that `t` has `rank` dimensions (`what` names them in the
// message) and that this size is at least 1; raises ValueError otherwise.
int64_t dim(const TensorView& t, const char* op, size_t rank, size_t index, const char* what);

class SequenceRows {
 public:
  // `sized_by` is a sequence array of the call (x, gates_x, or a saved array): it gives T and B
  // when padded, N when packed. batch_sizes: null, or a 1-D int64 CPU tensor whose values are
  // at least 1, non-increasing and add up to N.
  SequenceRows(const char* op, const TensorView& sized_by, const TensorView* batch_sizes);

  int64_t steps() const { return steps_; }
  int64_t batch() const { return batch_; }
  bool packed() const { return sizes_ != nullptr; }
  // batch_sizes' values (host memory), or null when padded.
  const int64_t* batch_sizes() const { return sizes_; }
  // Shape of a sequence array of `width` features.
  Dims shape(int64_t width) const;
  // Shape a backward's dy must have: shape(width), or [width] when dy is one row that every row
  // shares (one_row; the kernels' dy_one_row).
  Dims gradient_shape(const TensorView& dy, int64_t width) const { return one_row(dy) ? Dims{width} : shape(width); }
  static bool one_row(const TensorView& dy) { return dy.shape.size() == 1; }
  // Features of the sequence array `t` (its last dimension), after checking its rank.
  int64_t width(const TensorView& t) const;

 private:
  const char* op_;
  int64_t steps_ = 0, batch_ = 0, total_ = 0;
  const int64_t* sizes_ = nullptr;
};

}  // namespace fastgates::bindings
