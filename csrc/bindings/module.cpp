// fastgates._C: the Python entry points of the kernels. Each function checks every tensor
// argument (device, dtype, exact shape, contiguity, no aliasing of outputs), then releases the
// GIL and runs the kernel. Shapes and semantics of the arguments: csrc/cpu/kernels.h.
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings/tensor_view.h"
#include "cpu/kernels.h"
#include "cpu/thread_team.h"

namespace py = pybind11;
using fastgates::bindings::expect_no_overlap;
using fastgates::bindings::expect_tensor;
using fastgates::bindings::shape_string;
using fastgates::bindings::TensorView;
using fastgates::bindings::view_tensor;
namespace cpu = fastgates::cpu;

// The CUDA kernels' entry points and build_info() (csrc/bindings/cuda_module.cpp).
void bind_cuda(py::module_& m);

namespace {

cpu::DType parse_dtype(const std::string& op, const std::string& dtype) {
  if (dtype == "float32") return cpu::DType::float32;
  if (dtype == "float64") return cpu::DType::float64;
  throw py::value_error(op + ": dtype " + dtype + " is not supported on the CPU; expected float32 or float64");
}

// The tensors of one call: sizes are read from `sized_by`, then every tensor is checked.
class Arguments {
 public:
  // References returned by add() stay valid: the views never reallocate.
  explicit Arguments(const char* op) : op_(op) { views_.reserve(kMaxArguments); }

  TensorView& add(py::handle object, const char* name, bool output, bool optional = false) {
    if (views_.size() == kMaxArguments) throw std::logic_error("too many tensor arguments");
    if (optional && object.is_none()) {
      views_.emplace_back();
      views_.back().name = name;
      present_.push_back(false);
    } else {
      views_.push_back(view_tensor(object, name));
      present_.push_back(true);
    }
    outputs_.push_back(output);
    return views_.back();
  }

  void expect(size_t index, const std::vector<int64_t>& shape) {
    if (present_[index]) expect_tensor(views_[index], op_, dtype_, shape);
  }

  void set_dtype(const std::string& dtype) { dtype_ = dtype; }

  void check_aliasing() const {
    std::vector<const TensorView*> outputs, inputs;
    for (size_t i = 0; i < views_.size(); ++i) {
      if (!present_[i] || views_[i].name == "workspace") continue;
      (outputs_[i] ? outputs : inputs).push_back(&views_[i]);
    }
    expect_no_overlap(op_, outputs, inputs);
  }

  template <typename T>
  T* ptr(size_t index) const {
    return present_[index] ? reinterpret_cast<T*>(views_[index].data) : nullptr;
  }

  const TensorView& operator[](size_t index) const { return views_[index]; }

 private:
  static constexpr size_t kMaxArguments = 16;
  const char* op_;
  std::string dtype_;
  std::vector<TensorView> views_;
  std::vector<bool> present_;
  std::vector<bool> outputs_;
};

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

int checked_threads(const char* op, int num_threads) {
  if (num_threads < 1) throw py::value_error(std::string(op) + ": num_threads must be at least 1");
  return num_threads;
}

void expect_workspace(const char* op, const TensorView& w, cpu::Kernel kernel, cpu::DType dtype,
                      cpu::SequenceShape shape, int num_threads) {
  expect_tensor(w, op, "uint8", {w.shape.size() == 1 ? w.shape[0] : -1});
  const size_t needed = cpu::workspace_bytes(kernel, dtype, shape, num_threads);
  if (static_cast<size_t>(w.shape[0]) < needed) {
    throw py::value_error(std::string(op) + ": workspace has " + std::to_string(w.shape[0]) +
                          " bytes, the kernel needs " + std::to_string(needed));
  }
}

cpu::Kernel parse_kernel(const std::string& name) {
  if (name == "lstm_forward") return cpu::Kernel::lstm_forward;
  if (name == "lstm_backward") return cpu::Kernel::lstm_backward;
  if (name == "gru_forward") return cpu::Kernel::gru_forward;
  if (name == "gru_backward") return cpu::Kernel::gru_backward;
  throw py::value_error("unknown kernel '" + name + "'");
}

size_t workspace_bytes(const std::string& kernel, const std::string& dtype, int64_t steps, int64_t batch,
                       int64_t input_size, int64_t hidden_size, int num_threads) {
  if (steps < 1 || batch < 1 || hidden_size < 1 || input_size < 0) {
    throw py::value_error("workspace_bytes: steps, batch and hidden_size must be at least 1, input_size at least 0");
  }
  return cpu::workspace_bytes(parse_kernel(kernel), parse_dtype("workspace_bytes", dtype),
                              {steps, batch, hidden_size, input_size}, checked_threads("workspace_bytes", num_threads));
}

template <class Run>
void with_dtype(cpu::DType dtype, Run run) {
  if (dtype == cpu::DType::float32) {
    run(float{});
  } else {
    run(double{});
  }
}

void lstm_forward(py::handle x, py::handle w_ih, py::handle bias, py::handle w_hh, py::handle h0, py::handle c0,
                  py::handle gates_x, py::handle y, py::handle h_n, py::handle c_n, py::handle saved_gates,
                  py::handle saved_c, py::handle workspace, int num_threads) {
  const char* op = "lstm_forward";
  Arguments a(op);
  const TensorView& xv = a.add(x, "x", false);
  const TensorView& w = a.add(w_hh, "w_hh", false);
  const int64_t T = dim(xv, op, 3, 0, "steps, batch, input_size");
  const int64_t B = dim(xv, op, 3, 1, "steps, batch, input_size");
  const int64_t I = xv.shape[2];  // 0 is fine: no input projection, gates_x = bias
  const int64_t H = dim(w, op, 2, 1, "4 * hidden_size, hidden_size");
  const cpu::DType dtype = parse_dtype(op, xv.dtype);
  a.set_dtype(xv.dtype);
  a.add(w_ih, "w_ih", false);
  a.add(bias, "bias", false, true);
  a.add(h0, "h0", false);
  a.add(c0, "c0", false);
  a.add(gates_x, "gates_x", true);
  a.add(y, "y", true);
  a.add(h_n, "h_n", true);
  a.add(c_n, "c_n", true);
  a.add(saved_gates, "saved_gates", true, true);
  a.add(saved_c, "saved_c", true, true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  const std::vector<int64_t> state{B, H}, gates{T, B, 4 * H}, sequence{T, B, H};
  a.expect(0, {T, B, I});
  a.expect(1, {4 * H, H});
  a.expect(2, {4 * H, I});
  a.expect(3, {4 * H});
  a.expect(4, state);
  a.expect(5, state);
  a.expect(6, gates);
  a.expect(7, sequence);
  a.expect(8, state);
  a.expect(9, state);
  a.expect(10, gates);
  a.expect(11, sequence);
  if (!!a.ptr<char>(10) != !!a.ptr<char>(11)) {
    throw py::value_error("lstm_forward: saved_gates and saved_c must be given together or both be None");
  }
  num_threads = checked_threads(op, num_threads);
  const cpu::SequenceShape shape{T, B, H, I};
  expect_workspace(op, ws, cpu::Kernel::lstm_forward, dtype, shape, num_threads);
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::LstmForward<T_> args{shape,         {a.ptr<T_>(0), a.ptr<T_>(2), a.ptr<T_>(3), a.ptr<T_>(6)},
                              a.ptr<T_>(1),  a.ptr<T_>(4),  a.ptr<T_>(5),  a.ptr<T_>(7), a.ptr<T_>(8),
                              a.ptr<T_>(9),  a.ptr<T_>(10), a.ptr<T_>(11), a.ptr<void>(12), num_threads};
    py::gil_scoped_release no_gil;
    cpu::lstm_forward(args);
  });
}

void lstm_backward(py::handle w_hh, py::handle saved_gates, py::handle saved_c, py::handle c0, py::handle dy,
                   py::handle dh_n, py::handle dc_n, py::handle dgates, py::handle dh0, py::handle dc0,
                   py::handle workspace, int num_threads) {
  const char* op = "lstm_backward";
  Arguments a(op);
  const TensorView& w = a.add(w_hh, "w_hh", false);
  const TensorView& sg = a.add(saved_gates, "saved_gates", false);
  const int64_t H = dim(w, op, 2, 1, "4 * hidden_size, hidden_size");
  const int64_t T = dim(sg, op, 3, 0, "steps, batch, 4 * hidden_size");
  const int64_t B = dim(sg, op, 3, 1, "steps, batch, 4 * hidden_size");
  const cpu::DType dtype = parse_dtype(op, w.dtype);
  a.set_dtype(w.dtype);
  a.add(saved_c, "saved_c", false);
  a.add(c0, "c0", false);
  a.add(dy, "dy", false);
  a.add(dh_n, "dh_n", false);
  a.add(dc_n, "dc_n", false);
  a.add(dgates, "dgates", true);
  a.add(dh0, "dh0", true);
  a.add(dc0, "dc0", true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  const std::vector<int64_t> state{B, H}, gates{T, B, 4 * H}, sequence{T, B, H};
  a.expect(0, {4 * H, H});
  a.expect(1, gates);
  a.expect(2, sequence);
  a.expect(3, state);
  a.expect(4, sequence);
  a.expect(5, state);
  a.expect(6, state);
  a.expect(7, gates);
  a.expect(8, state);
  a.expect(9, state);
  num_threads = checked_threads(op, num_threads);
  expect_workspace(op, ws, cpu::Kernel::lstm_backward, dtype, {T, B, H, 0}, num_threads);
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::LstmBackward<T_> args{{T, B, H, 0},    a.ptr<T_>(0), a.ptr<T_>(1), a.ptr<T_>(2), a.ptr<T_>(3),
                               a.ptr<T_>(4), a.ptr<T_>(5), a.ptr<T_>(6), a.ptr<T_>(7), a.ptr<T_>(8),
                               a.ptr<T_>(9), a.ptr<void>(10), num_threads};
    py::gil_scoped_release no_gil;
    cpu::lstm_backward(args);
  });
}

void gru_forward(py::handle x, py::handle w_ih, py::handle b_ih, py::handle w_hh, py::handle b_hh, py::handle h0,
                 py::handle gates_x, py::handle y, py::handle h_n, py::handle saved, py::handle workspace,
                 int num_threads) {
  const char* op = "gru_forward";
  Arguments a(op);
  const TensorView& xv = a.add(x, "x", false);
  const TensorView& w = a.add(w_hh, "w_hh", false);
  const int64_t T = dim(xv, op, 3, 0, "steps, batch, input_size");
  const int64_t B = dim(xv, op, 3, 1, "steps, batch, input_size");
  const int64_t I = xv.shape[2];  // 0 is fine: no input projection, gates_x = bias
  const int64_t H = dim(w, op, 2, 1, "3 * hidden_size, hidden_size");
  const cpu::DType dtype = parse_dtype(op, xv.dtype);
  a.set_dtype(xv.dtype);
  a.add(w_ih, "w_ih", false);
  a.add(b_ih, "b_ih", false, true);
  a.add(b_hh, "b_hh", false, true);
  a.add(h0, "h0", false);
  a.add(gates_x, "gates_x", true);
  a.add(y, "y", true);
  a.add(h_n, "h_n", true);
  a.add(saved, "saved", true, true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  const std::vector<int64_t> state{B, H};
  a.expect(0, {T, B, I});
  a.expect(1, {3 * H, H});
  a.expect(2, {3 * H, I});
  a.expect(3, {3 * H});
  a.expect(4, {3 * H});
  a.expect(5, state);
  a.expect(6, {T, B, 3 * H});
  a.expect(7, {T, B, H});
  a.expect(8, state);
  a.expect(9, {T, B, 4 * H});
  num_threads = checked_threads(op, num_threads);
  const cpu::SequenceShape shape{T, B, H, I};
  expect_workspace(op, ws, cpu::Kernel::gru_forward, dtype, shape, num_threads);
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::GruForward<T_> args{shape,        {a.ptr<T_>(0), a.ptr<T_>(2), a.ptr<T_>(3), a.ptr<T_>(6)},
                             a.ptr<T_>(1), a.ptr<T_>(4), a.ptr<T_>(5), a.ptr<T_>(7), a.ptr<T_>(8),
                             a.ptr<T_>(9), a.ptr<void>(10), num_threads};
    py::gil_scoped_release no_gil;
    cpu::gru_forward(args);
  });
}

void gru_backward(py::handle w_hh, py::handle saved, py::handle h0, py::handle y, py::handle dy, py::handle dh_n,
                  py::handle dgates_x, py::handle dgates_h, py::handle dh0, py::handle workspace, int num_threads) {
  const char* op = "gru_backward";
  Arguments a(op);
  const TensorView& w = a.add(w_hh, "w_hh", false);
  const TensorView& s = a.add(saved, "saved", false);
  const int64_t H = dim(w, op, 2, 1, "3 * hidden_size, hidden_size");
  const int64_t T = dim(s, op, 3, 0, "steps, batch, 4 * hidden_size");
  const int64_t B = dim(s, op, 3, 1, "steps, batch, 4 * hidden_size");
  const cpu::DType dtype = parse_dtype(op, w.dtype);
  a.set_dtype(w.dtype);
  a.add(h0, "h0", false);
  a.add(y, "y", false);
  a.add(dy, "dy", false);
  a.add(dh_n, "dh_n", false);
  a.add(dgates_x, "dgates_x", true);
  a.add(dgates_h, "dgates_h", true);
  a.add(dh0, "dh0", true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  const std::vector<int64_t> state{B, H}, sequence{T, B, H}, gates{T, B, 3 * H};
  a.expect(0, {3 * H, H});
  a.expect(1, {T, B, 4 * H});
  a.expect(2, state);
  a.expect(3, sequence);
  a.expect(4, sequence);
  a.expect(5, state);
  a.expect(6, gates);
  a.expect(7, gates);
  a.expect(8, state);
  num_threads = checked_threads(op, num_threads);
  expect_workspace(op, ws, cpu::Kernel::gru_backward, dtype, {T, B, H, 0}, num_threads);
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::GruBackward<T_> args{{T, B, H, 0},    a.ptr<T_>(0), a.ptr<T_>(1), a.ptr<T_>(2), a.ptr<T_>(3),
                              a.ptr<T_>(4), a.ptr<T_>(5), a.ptr<T_>(6), a.ptr<T_>(7), a.ptr<T_>(8),
                              a.ptr<void>(9), num_threads};
    py::gil_scoped_release no_gil;
    cpu::gru_backward(args);
  });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastgates' compiled kernels (CPU). Tensor arguments are torch.Tensors; see csrc/cpu/kernels.h.";
  m.def("workspace_bytes", &workspace_bytes, py::arg("kernel"), py::arg("dtype"), py::arg("steps"),
        py::arg("batch"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_threads"));
  m.def("lstm_forward", &lstm_forward, py::arg("x"), py::arg("w_ih"), py::arg("bias").none(true), py::arg("w_hh"),
        py::arg("h0"), py::arg("c0"), py::arg("gates_x"), py::arg("y"), py::arg("h_n"), py::arg("c_n"),
        py::arg("saved_gates").none(true), py::arg("saved_c").none(true), py::arg("workspace"),
        py::arg("num_threads"));
  m.def("lstm_backward", &lstm_backward, py::arg("w_hh"), py::arg("saved_gates"), py::arg("saved_c"),
        py::arg("c0"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("dgates"), py::arg("dh0"),
        py::arg("dc0"), py::arg("workspace"), py::arg("num_threads"));
  m.def("gru_forward", &gru_forward, py::arg("x"), py::arg("w_ih"), py::arg("b_ih").none(true), py::arg("w_hh"),
        py::arg("b_hh").none(true), py::arg("h0"), py::arg("gates_x"), py::arg("y"), py::arg("h_n"),
        py::arg("saved").none(true), py::arg("workspace"), py::arg("num_threads"));
  m.def("gru_backward", &gru_backward, py::arg("w_hh"), py::arg("saved"), py::arg("h0"), py::arg("y"),
        py::arg("dy"), py::arg("dh_n"), py::arg("dgates_x"), py::arg("dgates_h"), py::arg("dh0"),
        py::arg("workspace"), py::arg("num_threads"));
  m.def("cpu_isa", [] { return std::string(cpu::cpu_isa()); },
        "The instruction-set build of the CPU kernels in use: avx512, avx2 or generic.");
  m.def("supported_cpu_isas", &cpu::supported_cpu_isas);
  m.def("set_cpu_isa", [](const std::string& name) {
    try {
      cpu::set_cpu_isa(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }, py::arg("name"), "Use another instruction-set build of the CPU kernels (for tests).");
  m.def("max_threads", &cpu::max_team_threads);
  m.def("set_multiply_adds_per_thread", &cpu::set_multiply_adds_per_thread, py::arg("value"),
        "Multiply-adds of a time step per extra thread (for tests: 0 runs every shape on all "
        "threads it can use). Returns the previous value.");
  bind_cuda(m);
}
