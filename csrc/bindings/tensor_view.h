// How a torch.Tensor crosses into fastgates._C without linking libtorch: the binding reads
// its data pointer, shape, strides, dtype and device through Python attribute calls, checks
// them against what the kernel expects, and hands the kernel a raw pointer.
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastgates::bindings {

// Sizes or strides of a tensor, held in place: a call reads a dozen tensors, and a heap
// allocation per list cost more than reading them. The kernels take at most 3 dimensions;
// view_tensor refuses a tensor of more than kMax.
class Dims {
 public:
  static constexpr size_t kMax = 8;

  Dims() = default;
  Dims(std::initializer_list<int64_t> values) {
    for (int64_t v : values) push_back(v);
  }

  void push_back(int64_t value) {
    if (size_ == kMax) throw std::length_error("Dims: more than kMax dimensions");
    values_[size_++] = value;
  }
  size_t size() const { return size_; }
  int64_t operator[](size_t i) const { return values_[i]; }
  int64_t back() const { return values_[size_ - 1]; }
  const int64_t* begin() const { return values_.data(); }
  const int64_t* end() const { return values_.data() + size_; }

  friend bool operator==(const Dims& a, const Dims& b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }
  friend bool operator!=(const Dims& a, const Dims& b) { return !(a == b); }

 private:
  std::array<int64_t, kMax> values_{};
  size_t size_ = 0;
};

struct TensorView {
  std::string name;  // the argument's name, for error messages
  uintptr_t data = 0;
  Dims shape;
  Dims strides;        // in elements
  std::string dtype;   // "float32", "float64", "uint8", ...
  std::string device;  // "cpu", "cuda", ...
  int64_t element_size = 0;

  int64_t numel() const;
  // Byte range [begin, end) the tensor's elements span (for the aliasing check).
  uintptr_t end() const;
};

// Reads a tensor argument; raises TypeError if `object` is not a tensor.
TensorView view_tensor(pybind11::handle object, const char* name);

// Raises ValueError unless the tensor is on the CPU, has dtype `dtype`, exactly `shape`, and is
// C-contiguous. `op` names the operation in the message.
void expect_tensor(const TensorView& t, const char* op, const std::string& dtype, const Dims& shape);

// Raises ValueError if the elements of an output overlap those of any other argument.
void expect_no_overlap(const char* op, const std::vector<const TensorView*>& outputs,
                       const std::vector<const TensorView*>& others);

std::string shape_string(const Dims& shape);

}  // namespace fastgates::bindings
