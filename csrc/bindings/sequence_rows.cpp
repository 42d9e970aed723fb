#include "bindings/sequence_rows.h"

#include <limits>
#include <string>

namespace py = pybind11;

namespace fastgates::bindings {

int64_t dim(const TensorView& t, const char* op, size_t rank, size_t index, const char* what) {
  if (t.shape.size() != rank) {
    throw py::value_error(std::string(op) + ": argument '" + t.name + "' must have " + std::to_string(rank) +
                          " dimensions (" + what + "), got shape " + shape_string(t.shape));
  }
  if (t.shape[index] < 1) {
    throw py::value_error(std::string(op) + ": argument '" + t.name + "' has shape " + shape_string(t.shape) +
                          "; every size must be at least 1");
  }
  return t.shape[index];
}

SequenceRows::SequenceRows(const char* op, const TensorView& sized_by, const TensorView* batch_sizes) : op_(op) {
  if (!batch_sizes) {
    steps_ = dim(sized_by, op, 3, 0, "steps, batch, features");
    batch_ = dim(sized_by, op, 3, 1, "steps, batch, features");
    total_ = steps_ * batch_;
    return;
  }
  const TensorView& b = *batch_sizes;
  steps_ = dim(b, op, 1, 0, "steps");
  expect_tensor(b, op, "int64", {steps_});
  sizes_ = reinterpret_cast<const int64_t*>(b.data);
  batch_ = sizes_[0];
  for (int64_t t = 0; t < steps_; ++t) {
    const int64_t rows = sizes_[t];
    if (rows < 1 || rows > (t == 0 ? rows : sizes_[t - 1])) {
      throw py::value_error(std::string(op) + ": batch_sizes must be at least 1 and non-increasing, got " +
                            std::to_string(rows) + " at step " + std::to_string(t) +
                            (t > 0 ? " after " + std::to_string(sizes_[t - 1]) : std::string()));
    }
    // Only a sum of more rows than any tensor holds could overflow: it cannot match N.
    if (total_ > std::numeric_limits<int64_t>::max() - rows) {
      throw py::value_error(std::string(op) + ": batch_sizes add up to more rows than any tensor holds");
    }
    total_ += rows;
  }
  dim(sized_by, op, 2, 0, "rows of all steps, features");
  if (sized_by.shape[0] != total_) {
    throw py::value_error(std::string(op) + ": argument '" + sized_by.name + "' has shape " +
                          shape_string(sized_by.shape) + ", but batch_sizes add up to " + std::to_string(total_) +
                          " rows");
  }
}

Dims SequenceRows::shape(int64_t width) const {
  return sizes_ ? Dims{total_, width} : Dims{steps_, batch_, width};
}

int64_t SequenceRows::width(const TensorView& t) const {
  const size_t rank = sizes_ ? 2 : 3;
  if (t.shape.size() != rank) {
    throw py::value_error(std::string(op_) + ": argument '" + t.name + "' must have " + std::to_string(rank) +
                          " dimensions, got shape " + shape_string(t.shape));
  }
  return t.shape.back();
}

}  // namespace fastgates::bindings
