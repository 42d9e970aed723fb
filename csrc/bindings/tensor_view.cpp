#include "bindings/tensor_view.h"

#include <sstream>

namespace py = pybind11;

namespace fastgates::bindings {

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uintptr_t TensorView::end() const {
  if (numel() == 0) return data;
  int64_t last = 0;
  for (size_t i = 0; i < shape.size(); ++i) last += (shape[i] - 1) * strides[i];
  return data + static_cast<uintptr_t>((last + 1) * element_size);
}

std::string shape_string(const Dims& shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) s << ",";
  s << ")";
  return s.str();
}

namespace {

struct KnownDtype {
  PyObject* dtype;  // a torch.dtype object (torch keeps one per dtype for its lifetime)
  const char* name;
  int64_t element_size;
};

// torch's dtype objects, looked up once: comparing by identity is much cheaper than building
// and parsing str(dtype) on every call.
const std::vector<KnownDtype>& known_dtypes() {
  static const std::vector<KnownDtype>* known = [] {
    py::module_ torch = py::module_::import("torch");
    auto* list = new std::vector<KnownDtype>();
    for (auto [name, size] : {std::pair<const char*, int64_t>{"float32", 4}, {"float64", 8}, {"uint8", 1},
                              {"int64", 8}, {"float16", 2}, {"bfloat16", 2}}) {
      py::object dtype = torch.attr(name);
      list->push_back(KnownDtype{dtype.release().ptr(), name, size});
    }
    return list;
  }();
  return *known;
}

// The attribute names view_tensor reads, made once: obj.attr("name") would build and hash a
// new Python string for every attribute of every tensor of every call.
struct AttributeNames {
  py::handle dtype, data_ptr, shape, stride, is_cpu;
};

const AttributeNames& attribute_names() {
  static const AttributeNames names = [] {
    auto intern = [](const char* name) {
      PyObject* s = PyUnicode_InternFromString(name);
      if (!s) throw py::error_already_set();
      return py::handle(s);  // kept for the process's lifetime, like the dtypes above
    };
    return AttributeNames{intern("dtype"), intern("data_ptr"), intern("shape"), intern("stride"), intern("is_cpu")};
  }();
  return names;
}

// Reads the ints of `sizes` (torch.Size, or the tuple stride() returns) into dims through the
// tuple: a generic iteration with a pybind11 cast per element took about as long as the
// attribute call. False if `sizes` is not a tuple of ints; ValueError beyond Dims::kMax.
bool read_sizes(const py::object& sizes, const char* name, Dims& dims) {
  PyObject* tuple = sizes.ptr();
  if (!PyTuple_Check(tuple)) return false;
  const Py_ssize_t n = PyTuple_GET_SIZE(tuple);
  if (n > static_cast<Py_ssize_t>(Dims::kMax)) {
    throw py::value_error(std::string("argument '") + name + "' has " + std::to_string(n) +
                          " dimensions; the kernels take at most " + std::to_string(Dims::kMax));
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    const long long value = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
    if (value == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    dims.push_back(value);
  }
  return true;
}

}  // namespace

TensorView view_tensor(py::handle object, const char* name) {
  TensorView t;
  t.name = name;
  auto not_a_tensor = [&] {
    return py::type_error(std::string("argument '") + name + "' must be a torch.Tensor, got " +
                          std::string(py::str(py::type::handle_of(object).attr("__name__"))));
  };
  py::object dtype, shape, strides;
  try {
    const AttributeNames& names = attribute_names();
    dtype = object.attr(names.dtype);
    t.data = object.attr(names.data_ptr)().cast<uintptr_t>();
    shape = object.attr(names.shape);
    strides = object.attr(names.stride)();
    if (!object.attr(names.is_cpu).cast<bool>()) t.device = py::str(object.attr("device").attr("type"));
    else t.device = "cpu";
  } catch (const std::exception&) {  // a missing attribute or one of the wrong type
    throw not_a_tensor();
  }
  if (!read_sizes(shape, name, t.shape) || !read_sizes(strides, name, t.strides)) throw not_a_tensor();
  for (const KnownDtype& known : known_dtypes()) {
    if (dtype.ptr() == known.dtype) {
      t.dtype = known.name;
      t.element_size = known.element_size;
    }
  }
  if (t.dtype.empty()) {
    std::string text = py::str(dtype);
    t.dtype = text.rfind("torch.", 0) == 0 ? text.substr(6) : text;
    t.element_size = object.attr("element_size")().cast<int64_t>();
  }
  if (t.shape.size() != t.strides.size()) {
    throw py::value_error(std::string("argument '") + name + "' has inconsistent shape and strides");
  }
  return t;
}

void expect_tensor(const TensorView& t, const char* op, const std::string& dtype, const Dims& shape) {
  // Built only for a message: every call checks a dozen tensors that are almost always right.
  auto where = [&] { return std::string(op) + ": argument '" + t.name + "'"; };
  if (t.device != "cpu") {
    throw py::value_error(where() + " is on device '" + t.device + "'; these kernels take CPU tensors");
  }
  if (t.dtype != dtype) {
    throw py::value_error(where() + " has dtype " + t.dtype + ", expected " + dtype);
  }
  if (t.shape != shape) {
    throw py::value_error(where() + " has shape " + shape_string(t.shape) + ", expected " + shape_string(shape));
  }
  int64_t expected_stride = 1;
  // An empty tensor has no elements to lay out: any strides are fine.
  for (size_t i = shape.size(); t.numel() > 0 && i-- > 0;) {
    if (shape[i] != 1 && t.strides[i] != expected_stride) {
      throw py::value_error(where() + " with shape " + shape_string(t.shape) + " is not contiguous (strides " +
                            shape_string(t.strides) + ")");
    }
    expected_stride *= shape[i];
  }
  if (t.numel() > 0 && t.data == 0) throw py::value_error(where() + " has no data");
}

void expect_no_overlap(const char* op, const std::vector<const TensorView*>& outputs,
                       const std::vector<const TensorView*>& others) {
  auto overlap = [](const TensorView& a, const TensorView& b) {
    return a.numel() > 0 && b.numel() > 0 && a.data < b.end() && b.data < a.end();
  };
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (size_t j = 0; j < outputs.size(); ++j) {
      if (i != j && overlap(*outputs[i], *outputs[j])) {
        throw py::value_error(std::string(op) + ": outputs '" + outputs[i]->name + "' and '" + outputs[j]->name +
                              "' share memory");
      }
    }
    for (const TensorView* other : others) {
      if (overlap(*outputs[i], *other)) {
        throw py::value_error(std::string(op) + ": output '" + outputs[i]->name + "' shares memory with '" +
                              other->name + "'");
      }
    }
  }
}

}  // namespace fastgates::bindings
