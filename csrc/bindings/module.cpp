// fastgates._C: the Python entry points of the kernels. Each function checks every tensor
// argument (device, dtype, exact shape, contiguity, no aliasing of outputs), then releases the
// GIL and runs the kernel. Shapes and semantics of the arguments: csrc/cpu/kernels.h.
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/sequence_rows.h"
#include "bindings/tensor_view.h"
#include "cpu/kernels.h"
#include "cpu/thread_team.h"

namespace py = pybind11;
using fastgates::bindings::dim;
using fastgates::bindings::Dims;
using fastgates::bindings::expect_no_overlap;
using fastgates::bindings::expect_tensor;
using fastgates::bindings::SequenceRows;
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

  void expect(size_t index, const Dims& shape) {
    if (present_[index]) expect_tensor(views_[index], op_, dtype_, shape);
  }

  void set_dtype(const std::string& dtype) { dtype_ = dtype; }

  // Output `index` may be the very same array as output `same_as` (equal pointer, shape and
  // strides), for a kernel documented to allow it; any other overlap is still an error.
  void allow_same(size_t index, size_t same_as) { same_ = {index, same_as}; }

  void check_aliasing() const {
    std::vector<const TensorView*> outputs, inputs;
    for (size_t i = 0; i < views_.size(); ++i) {
      if (!present_[i] || views_[i].name == "workspace") continue;
      const bool allowed = same_ && same_->first == i && present_[same_->second] &&
                           identical(views_[i], views_[same_->second]);
      if (allowed) continue;
      (outputs_[i] ? outputs : inputs).push_back(&views_[i]);
    }
    expect_no_overlap(op_, outputs, inputs);
  }

  bool present(size_t index) const { return present_[index]; }

  template <typename T>
  T* ptr(size_t index) const {
    return present_[index] ? reinterpret_cast<T*>(views_[index].data) : nullptr;
  }

  const TensorView& operator[](size_t index) const { return views_[index]; }

 private:
  static constexpr size_t kMaxArguments = 20;
  const char* op_;
  std::string dtype_;
  std::vector<TensorView> views_;
  std::vector<bool> present_;
  std::vector<bool> outputs_;
  std::optional<std::pair<size_t, size_t>> same_;

  static bool identical(const TensorView& a, const TensorView& b) {
    return a.data == b.data && a.shape == b.shape && a.strides == b.strides && a.dtype == b.dtype;
  }
};

int checked_threads(const char* op, int num_threads) {
  if (num_threads < 1) throw py::value_error(std::string(op) + ": num_threads must be at least 1");
  return num_threads;
}

void expect_workspace_bytes(const char* op, const TensorView& w, size_t needed) {
  expect_tensor(w, op, "uint8", {w.shape.size() == 1 ? w.shape[0] : -1});
  if (static_cast<size_t>(w.shape[0]) < needed) {
    throw py::value_error(std::string(op) + ": workspace has " + std::to_string(w.shape[0]) +
                          " bytes, the kernel needs " + std::to_string(needed));
  }
}

void expect_workspace(const char* op, const TensorView& w, cpu::Kernel kernel, cpu::DType dtype,
                      cpu::SequenceShape shape, int num_threads) {
  expect_workspace_bytes(op, w, cpu::workspace_bytes(kernel, dtype, shape, num_threads));
}

cpu::Kernel parse_kernel(const std::string& name) {
  if (name == "lstm_forward") return cpu::Kernel::lstm_forward;
  if (name == "lstm_backward") return cpu::Kernel::lstm_backward;
  if (name == "gru_forward") return cpu::Kernel::gru_forward;
  if (name == "gru_backward") return cpu::Kernel::gru_backward;
  throw py::value_error("unknown kernel '" + name + "'");
}

size_t workspace_bytes(const std::string& kernel, const std::string& dtype, int64_t steps, int64_t batch,
                       int64_t input_size, int64_t hidden_size, int num_threads, int64_t proj_size) {
  if (steps < 1 || batch < 1 || hidden_size < 1 || input_size < 0 || proj_size < 0 || proj_size >= hidden_size) {
    throw py::value_error("workspace_bytes: steps, batch and hidden_size must be at least 1, input_size at least 0, "
                          "proj_size in [0, hidden_size)");
  }
  return cpu::workspace_bytes(parse_kernel(kernel), parse_dtype("workspace_bytes", dtype),
                              {steps, batch, hidden_size, input_size, proj_size},
                              checked_threads("workspace_bytes", num_threads));
}

template <class Run>
void with_dtype(cpu::DType dtype, Run run) {
  if (dtype == cpu::DType::float32) {
    run(float{});
  } else {
    run(double{});
  }
}

// Hidden size from w_hh [G·H, K] and w_hr [P, H] (or None): (H, P), P = 0 without projection.
std::pair<int64_t, int64_t> hidden_and_projection(const char* op, const TensorView& w_hh, const TensorView* w_hr,
                                                  int gates) {
  const int64_t rows = dim(w_hh, op, 2, 0, "gates * hidden_size, recurrent inputs");
  if (rows % gates != 0) {
    throw py::value_error(std::string(op) + ": argument 'w_hh' has shape " + shape_string(w_hh.shape) +
                          "; its first dimension must be " + std::to_string(gates) + " * hidden_size");
  }
  const int64_t H = rows / gates;
  if (!w_hr) return {H, 0};
  const int64_t P = dim(*w_hr, op, 2, 0, "proj_size, hidden_size");
  if (P >= H) {
    throw py::value_error(std::string(op) + ": argument 'w_hr' has shape " + shape_string(w_hr->shape) +
                          "; proj_size must be smaller than hidden_size " + std::to_string(H));
  }
  return {H, P};
}

const TensorView* optional(const Arguments& a, size_t index) { return a.present(index) ? &a[index] : nullptr; }

void lstm_forward(py::handle x, py::handle w_ih, py::handle b_ih, py::handle w_hh, py::handle b_hh, py::handle w_hr,
                  py::handle h0, py::handle c0, py::handle batch_sizes, bool reverse, py::handle gates_x,
                  py::handle y, py::handle h_n, py::handle c_n, py::handle saved_gates, py::handle saved_c,
                  py::handle saved_m, py::handle workspace, int num_threads) {
  const char* op = "lstm_forward";
  Arguments a(op);
  const TensorView& xv = a.add(x, "x", false);
  a.add(w_hh, "w_hh", false);
  a.add(w_hr, "w_hr", false, true);
  a.add(batch_sizes, "batch_sizes", false, true);
  const SequenceRows rows(op, xv, optional(a, 3));
  const auto [H, P] = hidden_and_projection(op, a[1], optional(a, 2), 4);
  const int64_t K = P > 0 ? P : H;
  const int64_t I = rows.width(xv);  // 0 is fine: no input projection, gates_x = the biases
  const int64_t B = rows.batch();
  const cpu::DType dtype = parse_dtype(op, xv.dtype);
  a.set_dtype(xv.dtype);
  a.add(w_ih, "w_ih", false);
  a.add(b_ih, "b_ih", false, true);
  a.add(h0, "h0", false);
  a.add(c0, "c0", false);
  a.add(gates_x, "gates_x", true, true);
  a.add(y, "y", true);
  a.add(h_n, "h_n", true);
  a.add(c_n, "c_n", true);
  a.add(saved_gates, "saved_gates", true, true);
  a.add(saved_c, "saved_c", true, true);
  a.add(saved_m, "saved_m", true, true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  a.add(b_hh, "b_hh", false, true);  // index 16: added last, so the indices above stay as they were
  a.expect(0, rows.shape(I));
  a.expect(1, {4 * H, K});
  a.expect(2, {P, H});
  a.expect(4, {4 * H, I});
  a.expect(5, {4 * H});
  a.expect(6, {B, K});
  a.expect(7, {B, H});
  a.expect(8, rows.shape(4 * H));
  a.expect(9, rows.shape(K));
  a.expect(10, {B, K});
  a.expect(11, {B, H});
  a.expect(12, rows.shape(4 * H));
  a.expect(13, rows.shape(H));
  a.expect(14, rows.shape(H));
  a.expect(16, {4 * H});
  if (a.present(12) != a.present(13) || (P > 0 && a.present(12) != a.present(14))) {
    throw py::value_error(std::string(op) + ": saved_gates, saved_c (and saved_m with a projection) must be given "
                          "together or all be None");
  }
  if (P == 0 && a.present(14)) throw py::value_error(std::string(op) + ": saved_m is for projections; pass None");
  num_threads = checked_threads(op, num_threads);
  const cpu::SequenceShape shape{rows.steps(), B, H, I, P};
  expect_workspace(op, ws, cpu::Kernel::lstm_forward, dtype, shape, num_threads);
  a.allow_same(8, 12);  // gates_x may be saved_gates (kernels.h)
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::LstmForward<T_> args{};
    args.shape = shape;
    args.layout = cpu::SequenceLayout{rows.batch_sizes(), reverse};
    args.input = {a.ptr<T_>(0), a.ptr<T_>(4), a.ptr<T_>(5), a.ptr<T_>(16), a.ptr<T_>(8)};
    args.w_hh = a.ptr<T_>(1);
    args.w_hr = a.ptr<T_>(2);
    args.h0 = a.ptr<T_>(6);
    args.c0 = a.ptr<T_>(7);
    args.y = a.ptr<T_>(9);
    args.h_n = a.ptr<T_>(10);
    args.c_n = a.ptr<T_>(11);
    args.saved_gates = a.ptr<T_>(12);
    args.saved_c = a.ptr<T_>(13);
    args.saved_m = a.ptr<T_>(14);
    args.workspace = a.ptr<void>(15);
    args.num_threads = num_threads;
    py::gil_scoped_release no_gil;
    cpu::lstm_forward(args);
  });
}

void lstm_backward(py::handle w_hh, py::handle w_hr, py::handle saved_gates, py::handle saved_c, py::handle c0,
                   py::handle batch_sizes, bool reverse, py::handle dy, py::handle dh_n, py::handle dc_n,
                   py::handle dgates, py::handle dh, py::handle dh0, py::handle dc0, py::handle workspace,
                   int num_threads, py::handle db) {
  const char* op = "lstm_backward";
  Arguments a(op);
  a.add(w_hh, "w_hh", false);
  a.add(w_hr, "w_hr", false, true);
  const TensorView& sg = a.add(saved_gates, "saved_gates", false);
  a.add(batch_sizes, "batch_sizes", false, true);
  const SequenceRows rows(op, sg, optional(a, 3));
  const auto [H, P] = hidden_and_projection(op, a[0], optional(a, 1), 4);
  const int64_t K = P > 0 ? P : H;
  const int64_t B = rows.batch();
  const cpu::DType dtype = parse_dtype(op, a[0].dtype);
  a.set_dtype(a[0].dtype);
  a.add(saved_c, "saved_c", false);
  a.add(c0, "c0", false);
  a.add(dy, "dy", false);
  a.add(dh_n, "dh_n", false);
  a.add(dc_n, "dc_n", false);
  a.add(dgates, "dgates", true);
  a.add(dh, "dh", true, true);
  a.add(dh0, "dh0", true, true);
  a.add(dc0, "dc0", true, true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  a.add(db, "db", true, true);
  a.expect(0, {4 * H, K});
  a.expect(1, {P, H});
  a.expect(2, rows.shape(4 * H));
  a.expect(4, rows.shape(H));
  a.expect(5, {B, H});
  a.expect(6, rows.gradient_shape(a[6], K));
  a.expect(7, {B, K});
  a.expect(8, {B, H});
  a.expect(9, rows.shape(4 * H));
  a.expect(10, rows.shape(P));
  a.expect(11, {B, K});
  a.expect(12, {B, H});
  a.expect(14, {4 * H});
  if (a.present(10) != (P > 0)) {
    throw py::value_error(std::string(op) + ": dh is required with a projection (w_hr) and must be None without");
  }
  num_threads = checked_threads(op, num_threads);
  const cpu::SequenceShape shape{rows.steps(), B, H, 0, P};
  expect_workspace(op, ws, cpu::Kernel::lstm_backward, dtype, shape, num_threads);
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::LstmBackward<T_> args{};
    args.shape = shape;
    args.layout = cpu::SequenceLayout{rows.batch_sizes(), reverse};
    args.w_hh = a.ptr<T_>(0);
    args.w_hr = a.ptr<T_>(1);
    args.saved_gates = a.ptr<T_>(2);
    args.saved_c = a.ptr<T_>(4);
    args.c0 = a.ptr<T_>(5);
    args.dy = a.ptr<T_>(6);
    args.dy_one_row = SequenceRows::one_row(a[6]);
    args.dh_n = a.ptr<T_>(7);
    args.dc_n = a.ptr<T_>(8);
    args.dgates = a.ptr<T_>(9);
    args.dh = a.ptr<T_>(10);
    args.dh0 = a.ptr<T_>(11);
    args.dc0 = a.ptr<T_>(12);
    args.db = a.ptr<T_>(14);
    args.workspace = a.ptr<void>(13);
    args.num_threads = num_threads;
    py::gil_scoped_release no_gil;
    cpu::lstm_backward(args);
  });
}

void gru_forward(py::handle x, py::handle w_ih, py::handle b_ih, py::handle w_hh, py::handle b_hh, py::handle h0,
                 py::handle batch_sizes, bool reverse, py::handle gates_x, py::handle y, py::handle h_n,
                 py::handle saved, py::handle workspace, int num_threads) {
  const char* op = "gru_forward";
  Arguments a(op);
  const TensorView& xv = a.add(x, "x", false);
  a.add(w_hh, "w_hh", false);
  a.add(batch_sizes, "batch_sizes", false, true);
  const SequenceRows rows(op, xv, optional(a, 2));
  const int64_t H = hidden_and_projection(op, a[1], nullptr, 3).first;
  const int64_t I = rows.width(xv);  // 0 is fine: no input projection, gates_x = bias
  const int64_t B = rows.batch();
  const cpu::DType dtype = parse_dtype(op, xv.dtype);
  a.set_dtype(xv.dtype);
  a.add(w_ih, "w_ih", false);
  a.add(b_ih, "b_ih", false, true);
  a.add(b_hh, "b_hh", false, true);
  a.add(h0, "h0", false);
  a.add(gates_x, "gates_x", true, true);
  a.add(y, "y", true);
  a.add(h_n, "h_n", true);
  a.add(saved, "saved", true, true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  a.expect(0, rows.shape(I));
  a.expect(1, {3 * H, H});
  a.expect(3, {3 * H, I});
  a.expect(4, {3 * H});
  a.expect(5, {3 * H});
  a.expect(6, {B, H});
  a.expect(7, rows.shape(3 * H));
  a.expect(8, rows.shape(H));
  a.expect(9, {B, H});
  a.expect(10, rows.shape(4 * H));
  num_threads = checked_threads(op, num_threads);
  const cpu::SequenceShape shape{rows.steps(), B, H, I};
  expect_workspace(op, ws, cpu::Kernel::gru_forward, dtype, shape, num_threads);
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::GruForward<T_> args{};
    args.shape = shape;
    args.layout = cpu::SequenceLayout{rows.batch_sizes(), reverse};
    args.input = {a.ptr<T_>(0), a.ptr<T_>(3), a.ptr<T_>(4), nullptr, a.ptr<T_>(7)};
    args.w_hh = a.ptr<T_>(1);
    args.b_hh = a.ptr<T_>(5);
    args.h0 = a.ptr<T_>(6);
    args.y = a.ptr<T_>(8);
    args.h_n = a.ptr<T_>(9);
    args.saved = a.ptr<T_>(10);
    args.workspace = a.ptr<void>(11);
    args.num_threads = num_threads;
    py::gil_scoped_release no_gil;
    cpu::gru_forward(args);
  });
}

void gru_backward(py::handle w_hh, py::handle saved, py::handle h0, py::handle y, py::handle batch_sizes,
                  bool reverse, py::handle dy, py::handle dh_n, py::handle dgates_x, py::handle dgates_h,
                  py::handle dh0, py::handle workspace, int num_threads, py::handle db_ih, py::handle db_hh) {
  const char* op = "gru_backward";
  Arguments a(op);
  a.add(w_hh, "w_hh", false);
  const TensorView& s = a.add(saved, "saved", false);
  a.add(batch_sizes, "batch_sizes", false, true);
  const SequenceRows rows(op, s, optional(a, 2));
  const int64_t H = hidden_and_projection(op, a[0], nullptr, 3).first;
  const int64_t B = rows.batch();
  const cpu::DType dtype = parse_dtype(op, a[0].dtype);
  a.set_dtype(a[0].dtype);
  a.add(h0, "h0", false);
  a.add(y, "y", false);
  a.add(dy, "dy", false);
  a.add(dh_n, "dh_n", false);
  a.add(dgates_x, "dgates_x", true);
  a.add(dgates_h, "dgates_h", true);
  a.add(dh0, "dh0", true, true);
  const TensorView& ws = a.add(workspace, "workspace", true);
  a.add(db_ih, "db_ih", true, true);
  a.add(db_hh, "db_hh", true, true);
  a.expect(0, {3 * H, H});
  a.expect(1, rows.shape(4 * H));
  a.expect(3, {B, H});
  a.expect(4, rows.shape(H));
  a.expect(5, rows.gradient_shape(a[5], H));
  a.expect(6, {B, H});
  a.expect(7, rows.shape(3 * H));
  a.expect(8, rows.shape(3 * H));
  a.expect(9, {B, H});
  a.expect(11, {3 * H});
  a.expect(12, {3 * H});
  num_threads = checked_threads(op, num_threads);
  const cpu::SequenceShape shape{rows.steps(), B, H, 0};
  expect_workspace(op, ws, cpu::Kernel::gru_backward, dtype, shape, num_threads);
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    cpu::GruBackward<T_> args{};
    args.shape = shape;
    args.layout = cpu::SequenceLayout{rows.batch_sizes(), reverse};
    args.w_hh = a.ptr<T_>(0);
    args.saved = a.ptr<T_>(1);
    args.h0 = a.ptr<T_>(3);
    args.y = a.ptr<T_>(4);
    args.dy = a.ptr<T_>(5);
    args.dy_one_row = SequenceRows::one_row(a[5]);
    args.dh_n = a.ptr<T_>(6);
    args.dgates_x = a.ptr<T_>(7);
    args.dgates_h = a.ptr<T_>(8);
    args.dh0 = a.ptr<T_>(9);
    args.db_ih = a.ptr<T_>(11);
    args.db_hh = a.ptr<T_>(12);
    args.workspace = a.ptr<void>(10);
    args.num_threads = num_threads;
    py::gil_scoped_release no_gil;
    cpu::gru_backward(args);
  });
}

void check_matmul_sizes(const char* op, int64_t m, int64_t n, int64_t k) {
  if (m < 1 || n < 1 || k < 1) {
    throw py::value_error(std::string(op) + ": m, n and k must be at least 1, got m = " + std::to_string(m) +
                          ", n = " + std::to_string(n) + ", k = " + std::to_string(k));
  }
}

size_t matmul_workspace_bytes(const std::string& dtype, int64_t m, int64_t n, int64_t k, bool transpose_a,
                              int num_threads) {
  const char* op = "matmul_workspace_bytes";
  check_matmul_sizes(op, m, n, k);
  return cpu::matmul_workspace_bytes(parse_dtype(op, dtype), m, n, k, transpose_a, checked_threads(op, num_threads));
}

void matmul(py::handle a, py::handle b, py::handle c, bool transpose_a, bool accumulate, py::handle workspace,
            int num_threads) {
  const char* op = "matmul";
  Arguments args(op);
  const TensorView& av = args.add(a, "a", false);
  const TensorView& bv = args.add(b, "b", false);
  args.add(c, "c", true);
  const TensorView& ws = args.add(workspace, "workspace", true);
  const int64_t k = dim(bv, op, 2, 0, "k, n");
  const int64_t n = dim(bv, op, 2, 1, "k, n");
  const int64_t m = dim(av, op, 2, transpose_a ? 1 : 0, transpose_a ? "k, m" : "m, k");
  const cpu::DType dtype = parse_dtype(op, av.dtype);
  args.set_dtype(av.dtype);
  args.expect(0, transpose_a ? Dims{k, m} : Dims{m, k});
  args.expect(1, {k, n});
  args.expect(2, {m, n});
  num_threads = checked_threads(op, num_threads);
  expect_workspace_bytes(op, ws, cpu::matmul_workspace_bytes(dtype, m, n, k, transpose_a, num_threads));
  args.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    const cpu::Matmul<T_> call{args.ptr<T_>(0), args.ptr<T_>(1), args.ptr<T_>(2), m, n, k,
                               transpose_a, accumulate, args.ptr<void>(3), num_threads};
    py::gil_scoped_release no_gil;
    cpu::matmul(call);
  });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastgates' compiled kernels (CPU). Tensor arguments are torch.Tensors; see csrc/cpu/kernels.h.";
  m.def("workspace_bytes", &workspace_bytes, py::arg("kernel"), py::arg("dtype"), py::arg("steps"),
        py::arg("batch"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_threads"),
        py::arg("proj_size") = 0);
  m.def("lstm_forward", &lstm_forward, py::arg("x"), py::arg("w_ih"), py::arg("b_ih").none(true), py::arg("w_hh"),
        py::arg("b_hh").none(true), py::arg("w_hr").none(true), py::arg("h0"), py::arg("c0"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("gates_x"), py::arg("y"), py::arg("h_n"),
        py::arg("c_n"), py::arg("saved_gates").none(true), py::arg("saved_c").none(true),
        py::arg("saved_m").none(true), py::arg("workspace"), py::arg("num_threads"));
  m.def("lstm_backward", &lstm_backward, py::arg("w_hh"), py::arg("w_hr").none(true), py::arg("saved_gates"),
        py::arg("saved_c"), py::arg("c0"), py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("dy"),
        py::arg("dh_n"), py::arg("dc_n"), py::arg("dgates"), py::arg("dh").none(true),
        py::arg("dh0").none(true), py::arg("dc0").none(true), py::arg("workspace"), py::arg("num_threads"),
        py::arg("db").none(true) = py::none());
  m.def("gru_forward", &gru_forward, py::arg("x"), py::arg("w_ih"), py::arg("b_ih").none(true), py::arg("w_hh"),
        py::arg("b_hh").none(true), py::arg("h0"), py::arg("batch_sizes").none(true), py::arg("reverse"),
        py::arg("gates_x"), py::arg("y"), py::arg("h_n"), py::arg("saved").none(true), py::arg("workspace"),
        py::arg("num_threads"));
  m.def("gru_backward", &gru_backward, py::arg("w_hh"), py::arg("saved"), py::arg("h0"), py::arg("y"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("dy"), py::arg("dh_n"),
        py::arg("dgates_x"), py::arg("dgates_h"), py::arg("dh0").none(true), py::arg("workspace"),
        py::arg("num_threads"), py::arg("db_ih").none(true) = py::none(), py::arg("db_hh").none(true) = py::none());
  m.def("matmul_workspace_bytes", &matmul_workspace_bytes, py::arg("dtype"), py::arg("m"), py::arg("n"),
        py::arg("k"), py::arg("transpose_a"), py::arg("num_threads"));
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("transpose_a"), py::arg("accumulate"),
        py::arg("workspace"), py::arg("num_threads"),
        "c = op(a) @ b, or c += op(a) @ b when accumulate; op(a) = a.t() when transpose_a. a [m, k] or "
        "(transposed) [k, m], b [k, n], c [m, n], all C-contiguous of one dtype (float32 or float64).");
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
  m.def("cpu_peak_gflops", [](int num_threads, double seconds) {
    if (num_threads < 1 || !(seconds > 0 && seconds <= 60)) {
      throw py::value_error("cpu_peak_gflops: num_threads must be at least 1 and seconds in (0, 60]");
    }
    py::gil_scoped_release no_gil;
    return cpu::peak_gflops(num_threads, seconds);
  }, py::arg("num_threads"), py::arg("seconds") = 0.3,
        "The float32 arithmetic peak in GFLOP/s of num_threads threads of the CPU kernels' instruction "
        "set, measured with multiply-adds on vectors in registers (csrc/cpu/peak.h); best of three "
        "runs of about seconds / 3 each.");
  m.def("set_multiply_adds_per_thread", &cpu::set_multiply_adds_per_thread, py::arg("value"),
        "Multiply-adds of a time step per extra thread (for tests: 0 runs every shape on all "
        "threads it can use). Returns the previous value.");
  m.def("set_l2_cache_bytes", &cpu::set_l2_cache_bytes, py::arg("bytes"),
        "The L2 size in bytes the CPU kernels plan their chunks and panel groups for (for tests, "
        "and to try another machine's rules): 0 as if unknown, -1 for this machine's. Results do "
        "not depend on it. Returns the previous setting (-1: the machine's).");
  m.def("l2_cache_bytes", &cpu::l2_cache_bytes,
        "The L2 size in bytes the CPU kernels plan for (0: unknown).");
  bind_cuda(m);
}
