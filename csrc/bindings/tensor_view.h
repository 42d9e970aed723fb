// How a torch.Tensor crosses into fastgates._C without linking libtorch: the binding reads
// its data pointer, shape, strides, dtype and device through Python attribute calls, checks
// them against what the kernel expects, and hands the kernel a raw pointer.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fastgates::bindings {

struct TensorView {
  std::string name;  // the argument's name, for error messages
  uintptr_t data = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  std::string dtype;             // "float32", "float64", "uint8", ...
  std::string device;            // "cpu", "cuda", ...
  int64_t element_size = 0;

  int64_t numel() const;
  // Byte range [begin, end) the tensor's elements span (for the aliasing check).
  uintptr_t end() const;
};

// Reads a tensor argument; raises TypeError if `object` is not a tensor.
TensorView view_tensor(pybind11::handle object, const char* name);

// Raises ValueError unless the tensor is on the CPU, has dtype `dtype`, exactly `shape`, and is
// C-contiguous. `op` names the operation in the message.
void expect_tensor(const TensorView& t, const char* op, const std::string& dtype,
                   const std::vector<int64_t>& shape);

// Raises ValueError if the elements of an output overlap those of any other argument.
void expect_no_overlap(const char* op, const std::vector<const TensorView*>& outputs,
                       const std::vector<const TensorView*>& others);

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace fastgates::bindings
