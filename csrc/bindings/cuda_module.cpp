// The CUDA kernels' Python entry points, and fastgates._C.build_info().
//   _C.cuda_emulated  the kernels run on the CPU by the emulation (always built; CPU tensors)
//   _C.cuda           the kernels on the GPU (only if the build found nvcc; CUDA tensors)
// Both take the same arguments (the GPU ones also the device index and the stream) and check
// every tensor (device, dtype, exact shape, contiguity, no aliasing of outputs) before the
// kernel runs. Shapes and semantics: csrc/cuda/kernels.h; how an op calls them:
// python/fastgates/_cuda.py.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/sequence_rows.h"
#include "bindings/tensor_view.h"
#include "cuda/kernels.h"

namespace py = pybind11;
using fastgates::bindings::Dims;
using fastgates::bindings::expect_no_overlap;
using fastgates::bindings::SequenceRows;
using fastgates::bindings::expect_tensor;
using fastgates::bindings::TensorView;
using fastgates::bindings::view_tensor;
namespace cuda = fastgates::cuda;

namespace {

py::list split_list(const std::string& text, char separator) {
  py::list items;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    if (end > start) items.append(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

py::dict build_info() {
  py::dict info;
#if defined(FG_WITH_CUDA)
  info["cuda"] = true;
  info["cuda_archs"] = split_list(FG_CUDA_ARCHS, ',');
  info["cuda_version"] = FG_CUDA_VERSION;
#else
  info["cuda"] = false;
  info["cuda_archs"] = py::list();
  info["cuda_version"] = py::none();
#endif
  info["cuda_emulated"] = true;
  info["cpu_isas"] = split_list(FG_CPU_ISAS, ',');
  return info;
}

cuda::Strategy parse_strategy(const char* op, const std::string& name, bool* automatic) {
  *automatic = name == "auto";
  if (name == "auto" || name == "per_step") return cuda::Strategy::per_step;
  if (name == "persistent") return cuda::Strategy::persistent;
  throw py::value_error(std::string(op) + ": strategy must be 'auto', 'per_step' or 'persistent', got '" + name + "'");
}

int dtype_bytes(const char* op, const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "float64") return 8;
  if (dtype == "float16" || dtype == "bfloat16") return 2;
  throw py::value_error(std::string(op) + ": dtype " + dtype + " is not supported by the CUDA kernels; expected "
                        "float32, float64, float16 or bfloat16");
}

int gates_of(const std::string& kernel) {
  if (kernel == "lstm_forward" || kernel == "lstm_backward") return 4;
  if (kernel == "gru_forward" || kernel == "gru_backward") return 3;
  throw py::value_error("unknown kernel '" + kernel + "'");
}

cuda::LaunchConfig config_for(const char* op, const std::string& strategy, int64_t batch, int64_t hidden, int gates,
                              int bytes, const cuda::DeviceProperties& device) {
  bool automatic = false;
  const cuda::Strategy s = parse_strategy(op, strategy, &automatic);
  try {
    return automatic ? cuda::choose_strategy(batch, hidden, gates, bytes, device)
                     : cuda::make_config(s, batch, hidden, gates, bytes, device);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string(op) + ": " + e.what());
  }
}

py::dict config_dict(const cuda::LaunchConfig& c) {
  py::dict d;
  d["strategy"] = c.strategy == cuda::Strategy::persistent ? "persistent" : "per_step";
  d["units_per_block"] = c.units_per_block;
  d["reduction_lanes"] = c.reduction_lanes;
  d["grid"] = py::make_tuple(c.grid_x, c.grid_y);
  d["threads"] = c.threads;
  d["shared_bytes"] = c.shared_bytes;
  d["workspace_bytes"] = c.workspace_bytes;
  return d;
}

py::dict properties_dict(const cuda::DeviceProperties& p) {
  py::dict d;
  d["sm_count"] = p.sm_count;
  d["shared_bytes_per_block"] = p.shared_bytes_per_block;
  d["cooperative_launch"] = p.cooperative_launch;
  return d;
}

// Where the kernels run: the emulation (CPU tensors) or the GPU (CUDA tensors of one device).
struct Emulated {
  static constexpr const char* device_type = "cpu";
  static cuda::DeviceProperties properties(int) { return fastgates::cuda_emulated::device_properties(); }
  template <typename T>
  static void run(const cuda::LstmForward<T>& a, const cuda::LaunchConfig& c, int, uintptr_t) {
    fastgates::cuda_emulated::lstm_forward(a, c);
  }
  template <typename T>
  static void run(const cuda::LstmBackward<T>& a, const cuda::LaunchConfig& c, int, uintptr_t) {
    fastgates::cuda_emulated::lstm_backward(a, c);
  }
  template <typename T>
  static void run(const cuda::GruForward<T>& a, const cuda::LaunchConfig& c, int, uintptr_t) {
    fastgates::cuda_emulated::gru_forward(a, c);
  }
  template <typename T>
  static void run(const cuda::GruBackward<T>& a, const cuda::LaunchConfig& c, int, uintptr_t) {
    fastgates::cuda_emulated::gru_backward(a, c);
  }
};

#if defined(FG_WITH_CUDA)
struct Gpu {
  static constexpr const char* device_type = "cuda";
  static cuda::DeviceProperties properties(int device) { return cuda::device_properties(device); }
  template <typename T>
  static void run(const cuda::LstmForward<T>& a, const cuda::LaunchConfig& c, int device, uintptr_t stream) {
    cuda::lstm_forward(a, c, device, reinterpret_cast<void*>(stream));
  }
  template <typename T>
  static void run(const cuda::LstmBackward<T>& a, const cuda::LaunchConfig& c, int device, uintptr_t stream) {
    cuda::lstm_backward(a, c, device, reinterpret_cast<void*>(stream));
  }
  template <typename T>
  static void run(const cuda::GruForward<T>& a, const cuda::LaunchConfig& c, int device, uintptr_t stream) {
    cuda::gru_forward(a, c, device, reinterpret_cast<void*>(stream));
  }
  template <typename T>
  static void run(const cuda::GruBackward<T>& a, const cuda::LaunchConfig& c, int device, uintptr_t stream) {
    cuda::gru_backward(a, c, device, reinterpret_cast<void*>(stream));
  }
};
#endif

// The tensors of one call, checked against the sizes read from the first ones.
template <class Backend>
class Call {
 public:
  Call(const char* op, int device) : op_(op), device_(device) {}

  // Adds a tensor (None allowed if optional) and returns its index. `host`: a CPU tensor
  // whichever the backend (batch_sizes).
  size_t add(py::handle object, const char* name, bool output, bool optional = false, bool host = false) {
    Entry e;
    e.output = output;
    e.present = !(optional && object.is_none());
    if (e.present) {
      e.view = view_tensor(object, name);
      const std::string expected = host ? "cpu" : Backend::device_type;
      if (e.view.device != expected) {
        throw py::value_error(std::string(op_) + ": argument '" + name + "' is on device '" + e.view.device +
                              "', expected '" + expected + "'");
      }
      if (e.view.device == "cuda" && object.attr("device").attr("index").cast<int>() != device_) {
        throw py::value_error(std::string(op_) + ": argument '" + name + "' is not on CUDA device " +
                              std::to_string(device_));
      }
      // The device is checked: expect_tensor checks dtype, shape and contiguity.
      e.view.device = "cpu";
    } else {
      e.view.name = name;
    }
    entries_.push_back(std::move(e));
    return entries_.size() - 1;
  }

  const TensorView& view(size_t i) const { return entries_[i].view; }
  bool present(size_t i) const { return entries_[i].present; }

  int64_t size(size_t i, size_t rank, size_t dim) const {
    const TensorView& v = entries_[i].view;
    if (v.shape.size() != rank || v.shape[dim] < 1) {
      throw py::value_error(std::string(op_) + ": argument '" + v.name + "' must have " + std::to_string(rank) +
                            " dimensions with every size at least 1, got shape " +
                            fastgates::bindings::shape_string(v.shape));
    }
    return v.shape[dim];
  }

  void expect(size_t i, const std::string& dtype, const Dims& shape) const {
    if (entries_[i].present) expect_tensor(entries_[i].view, op_, dtype, shape);
  }

  void expect_workspace(size_t i, const cuda::LaunchConfig& config, int64_t steps, bool packed) const {
    const TensorView& w = entries_[i].view;
    expect_tensor(w, op_, "uint8", {w.shape.size() == 1 ? w.shape[0] : -1});
    const size_t needed = cuda::workspace_bytes(config, steps, packed);
    if (static_cast<size_t>(w.shape[0]) < needed) {
      throw py::value_error(std::string(op_) + ": workspace has " + std::to_string(w.shape[0]) +
                            " bytes, the kernel needs " + std::to_string(needed));
    }
    if (w.data % 16 != 0) throw py::value_error(std::string(op_) + ": workspace must be 16-byte aligned");
  }

  void check_aliasing() const {
    std::vector<const TensorView*> outputs, inputs;
    for (const Entry& e : entries_) {
      if (!e.present) continue;
      (e.output ? outputs : inputs).push_back(&e.view);
    }
    expect_no_overlap(op_, outputs, inputs);
  }

  template <typename T>
  T* ptr(size_t i) const {
    return entries_[i].present ? reinterpret_cast<T*>(entries_[i].view.data) : nullptr;
  }

 private:
  struct Entry {
    TensorView view;
    bool output = false;
    bool present = false;
  };
  const char* op_;
  int device_;
  std::vector<Entry> entries_;
};


// P of an LSTM call: 0 without w_hr (argument `w`); else w_hr's rows, 1 <= P < H, and the
// output only a projection has (argument `out`) must come with it.
template <class Backend>
int64_t projection_size(const char* op, const Call<Backend>& a, size_t w, size_t out, const char* out_name,
                        int64_t hidden) {
  if (a.present(w) != a.present(out)) {
    throw py::value_error(std::string(op) + ": w_hr and " + out_name + " must be given together or both be None");
  }
  if (!a.present(w)) return 0;
  const int64_t P = a.size(w, 2, 0);
  if (P >= hidden) {
    throw py::value_error(std::string(op) + ": w_hr must have fewer rows than hidden_size " + std::to_string(hidden) +
                          ", got shape " + fastgates::bindings::shape_string(a.view(w).shape));
  }
  return P;
}

// dtype: one that dtype_bytes() accepted.
template <class Run>
void with_dtype(const std::string& dtype, Run run) {
  if (dtype == "float32") {
    run(float{});
  } else if (dtype == "float64") {
    run(double{});
  } else if (dtype == "float16") {
    run(cuda::Half{});
  } else {
    run(cuda::BFloat16{});
  }
}

// Runs the kernel without the GIL; the kernels' errors become RuntimeError (pybind11's
// translation of std::runtime_error), configuration errors ValueError.
template <class Backend, class Args>
void run_kernel(const Args& args, const cuda::LaunchConfig& config, int device, uintptr_t stream) {
  try {
    py::gil_scoped_release no_gil;
    Backend::run(args, config, device, stream);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

template <class Backend>
void lstm_forward(py::handle gates_x, py::handle w_hh, py::handle h0, py::handle c0, py::handle batch_sizes,
                  bool reverse, py::handle y, py::handle h_n, py::handle c_n, py::handle saved_gates,
                  py::handle saved_c, py::handle workspace, const std::string& strategy, int device,
                  uintptr_t stream, py::handle w_hr, py::handle saved_m) {
  const char* op = "lstm_forward";
  Call<Backend> a(op, device);
  a.add(gates_x, "gates_x", false);
  a.add(w_hh, "w_hh", false);
  a.add(h0, "h0", false);
  a.add(c0, "c0", false);
  a.add(y, "y", true);
  a.add(h_n, "h_n", true);
  a.add(c_n, "c_n", true);
  a.add(saved_gates, "saved_gates", true, true);
  a.add(saved_c, "saved_c", true, true);
  a.add(w_hr, "w_hr", false, true);
  a.add(saved_m, "saved_m", true, true);
  const size_t ws = a.add(workspace, "workspace", true);
  const size_t bs = a.add(batch_sizes, "batch_sizes", false, true, true);
  const SequenceRows rows(op, a.view(0), a.present(bs) ? &a.view(bs) : nullptr);
  const int64_t T = rows.steps(), B = rows.batch(), H = a.size(3, 2, 1);
  const int64_t P = projection_size(op, a, 9, 10, "saved_m", H);
  const int64_t K = P > 0 ? P : H;
  const std::string dtype = a.view(0).dtype;
  const int bytes = dtype_bytes(op, dtype);
  const Dims cell{B, H}, state{B, K}, gates = rows.shape(4 * H), cells = rows.shape(H);
  const std::vector<Dims> shapes{gates, {4 * H, K}, state, cell,  rows.shape(K), state,
                                  cell,  gates,      cells, {P, H}, cells};
  for (size_t i = 0; i < shapes.size(); ++i) a.expect(i, dtype, shapes[i]);
  if (a.present(7) != a.present(8)) {
    throw py::value_error("lstm_forward: saved_gates and saved_c must be given together or both be None");
  }
  const cuda::LaunchConfig config = config_for(op, strategy, B, H, 4, bytes, Backend::properties(device));
  a.expect_workspace(ws, config, T, rows.packed());
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    const cuda::LstmForward<T_> args{{T, B, H, P},
                                     cuda::SequenceLayout{rows.batch_sizes(), reverse},
                                     a.template ptr<T_>(0),
                                     a.template ptr<T_>(1),
                                     a.template ptr<T_>(9),
                                     a.template ptr<T_>(2),
                                     a.template ptr<T_>(3),
                                     a.template ptr<T_>(4),
                                     a.template ptr<T_>(5),
                                     a.template ptr<T_>(6),
                                     a.template ptr<T_>(7),
                                     a.template ptr<T_>(8),
                                     a.template ptr<T_>(10),
                                     a.template ptr<void>(ws)};
    run_kernel<Backend>(args, config, device, stream);
  });
}

template <class Backend>
void lstm_backward(py::handle w_hh, py::handle saved_gates, py::handle saved_c, py::handle c0,
                   py::handle batch_sizes, bool reverse, py::handle dy, py::handle dh_n, py::handle dc_n,
                   py::handle dgates, py::handle dh0, py::handle dc0, py::handle workspace,
                   const std::string& strategy, int device, uintptr_t stream, py::handle w_hr, py::handle dh) {
  const char* op = "lstm_backward";
  Call<Backend> a(op, device);
  a.add(w_hh, "w_hh", false);
  a.add(saved_gates, "saved_gates", false);
  a.add(saved_c, "saved_c", false);
  a.add(c0, "c0", false);
  a.add(dy, "dy", false);
  a.add(dh_n, "dh_n", false);
  a.add(dc_n, "dc_n", false);
  a.add(dgates, "dgates", true);
  a.add(dh0, "dh0", true, true);
  a.add(dc0, "dc0", true, true);
  a.add(w_hr, "w_hr", false, true);
  a.add(dh, "dh", true, true);
  const size_t ws = a.add(workspace, "workspace", true);
  const size_t bs = a.add(batch_sizes, "batch_sizes", false, true, true);
  const SequenceRows rows(op, a.view(1), a.present(bs) ? &a.view(bs) : nullptr);
  const int64_t T = rows.steps(), B = rows.batch(), H = a.size(3, 2, 1);
  const int64_t P = projection_size(op, a, 10, 11, "dh", H);
  const int64_t K = P > 0 ? P : H;
  const std::string dtype = a.view(0).dtype;
  const int bytes = dtype_bytes(op, dtype);
  const Dims cell{B, H}, state{B, K}, gates = rows.shape(4 * H), cells = rows.shape(H),
                 sequence = rows.shape(K);
  const bool dy_one_row = SequenceRows::one_row(a.view(4));
  const std::vector<Dims> shapes{{4 * H, K}, gates, cells, cell,     rows.gradient_shape(a.view(4), K), state,
                                  cell,       gates, state, cell, {P, H},   sequence};
  for (size_t i = 0; i < shapes.size(); ++i) a.expect(i, dtype, shapes[i]);
  const cuda::LaunchConfig config = config_for(op, strategy, B, H, 4, bytes, Backend::properties(device));
  a.expect_workspace(ws, config, T, rows.packed());
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    const cuda::LstmBackward<T_> args{{T, B, H, P},
                                      cuda::SequenceLayout{rows.batch_sizes(), reverse},
                                      a.template ptr<T_>(0),
                                      a.template ptr<T_>(10),
                                      a.template ptr<T_>(1),
                                      a.template ptr<T_>(2),
                                      a.template ptr<T_>(3),
                                      a.template ptr<T_>(4),
                                      a.template ptr<T_>(5),
                                      a.template ptr<T_>(6),
                                      a.template ptr<T_>(7),
                                      a.template ptr<T_>(11),
                                      a.template ptr<T_>(8),
                                      a.template ptr<T_>(9),
                                      a.template ptr<void>(ws),
                                      dy_one_row};
    run_kernel<Backend>(args, config, device, stream);
  });
}

template <class Backend>
void gru_forward(py::handle gates_x, py::handle w_hh, py::handle b_hh, py::handle h0, py::handle batch_sizes,
                 bool reverse, py::handle y, py::handle h_n, py::handle saved, py::handle workspace,
                 const std::string& strategy, int device, uintptr_t stream) {
  const char* op = "gru_forward";
  Call<Backend> a(op, device);
  a.add(gates_x, "gates_x", false);
  a.add(w_hh, "w_hh", false);
  a.add(b_hh, "b_hh", false, true);
  a.add(h0, "h0", false);
  a.add(y, "y", true);
  a.add(h_n, "h_n", true);
  a.add(saved, "saved", true, true);
  const size_t ws = a.add(workspace, "workspace", true);
  const size_t bs = a.add(batch_sizes, "batch_sizes", false, true, true);
  const SequenceRows rows(op, a.view(0), a.present(bs) ? &a.view(bs) : nullptr);
  const int64_t T = rows.steps(), B = rows.batch(), H = a.size(1, 2, 1);
  const std::string dtype = a.view(0).dtype;
  const int bytes = dtype_bytes(op, dtype);
  const std::vector<Dims> shapes{rows.shape(3 * H), {3 * H, H}, {3 * H},          {B, H},
                                  rows.shape(H),     {B, H},     rows.shape(4 * H)};
  for (size_t i = 0; i < shapes.size(); ++i) a.expect(i, dtype, shapes[i]);
  const cuda::LaunchConfig config = config_for(op, strategy, B, H, 3, bytes, Backend::properties(device));
  a.expect_workspace(ws, config, T, rows.packed());
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    const cuda::GruForward<T_> args{{T, B, H},
                                    cuda::SequenceLayout{rows.batch_sizes(), reverse},
                                    a.template ptr<T_>(0),
                                    a.template ptr<T_>(1),
                                    a.template ptr<T_>(2),
                                    a.template ptr<T_>(3),
                                    a.template ptr<T_>(4),
                                    a.template ptr<T_>(5),
                                    a.template ptr<T_>(6),
                                    a.template ptr<void>(ws)};
    run_kernel<Backend>(args, config, device, stream);
  });
}

template <class Backend>
void gru_backward(py::handle w_hh, py::handle saved, py::handle h0, py::handle y, py::handle batch_sizes,
                  bool reverse, py::handle dy, py::handle dh_n, py::handle dgates_x, py::handle dgates_h,
                  py::handle dh0, py::handle workspace, const std::string& strategy, int device, uintptr_t stream) {
  const char* op = "gru_backward";
  Call<Backend> a(op, device);
  a.add(w_hh, "w_hh", false);
  a.add(saved, "saved", false);
  a.add(h0, "h0", false);
  a.add(y, "y", false);
  a.add(dy, "dy", false);
  a.add(dh_n, "dh_n", false);
  a.add(dgates_x, "dgates_x", true);
  a.add(dgates_h, "dgates_h", true);
  a.add(dh0, "dh0", true, true);
  const size_t ws = a.add(workspace, "workspace", true);
  const size_t bs = a.add(batch_sizes, "batch_sizes", false, true, true);
  const SequenceRows rows(op, a.view(1), a.present(bs) ? &a.view(bs) : nullptr);
  const int64_t T = rows.steps(), B = rows.batch(), H = a.size(0, 2, 1);
  const std::string dtype = a.view(0).dtype;
  const int bytes = dtype_bytes(op, dtype);
  const Dims state{B, H}, sequence = rows.shape(H), gates = rows.shape(3 * H);
  const bool dy_one_row = SequenceRows::one_row(a.view(4));
  const std::vector<Dims> shapes{{3 * H, H}, rows.shape(4 * H), state, sequence, rows.gradient_shape(a.view(4), H),
                                  state,      gates,             gates, state};
  for (size_t i = 0; i < shapes.size(); ++i) a.expect(i, dtype, shapes[i]);
  const cuda::LaunchConfig config = config_for(op, strategy, B, H, 3, bytes, Backend::properties(device));
  a.expect_workspace(ws, config, T, rows.packed());
  a.check_aliasing();
  with_dtype(dtype, [&](auto zero) {
    using T_ = decltype(zero);
    const cuda::GruBackward<T_> args{{T, B, H},
                                     cuda::SequenceLayout{rows.batch_sizes(), reverse},
                                     a.template ptr<T_>(0),
                                     a.template ptr<T_>(1),
                                     a.template ptr<T_>(2),
                                     a.template ptr<T_>(3),
                                     a.template ptr<T_>(4),
                                     a.template ptr<T_>(5),
                                     a.template ptr<T_>(6),
                                     a.template ptr<T_>(7),
                                     a.template ptr<T_>(8),
                                     a.template ptr<void>(ws),
                                     dy_one_row};
    run_kernel<Backend>(args, config, device, stream);
  });
}

// packed_steps: T of a packed call (its workspace holds the step table), 0 when padded.
template <class Backend>
py::dict launch_config(const std::string& kernel, const std::string& dtype, int64_t batch, int64_t hidden_size,
                       const std::string& strategy, int device, int64_t packed_steps) {
  if (packed_steps < 0) throw py::value_error("launch_config: packed_steps must be at least 0");
  const cuda::LaunchConfig config = config_for("launch_config", strategy, batch, hidden_size, gates_of(kernel),
                                               dtype_bytes("launch_config", dtype), Backend::properties(device));
  py::dict d = config_dict(config);
  d["workspace_bytes"] = cuda::workspace_bytes(config, packed_steps, packed_steps > 0);
  return d;
}

// Python signatures: the emulated ones without device and stream.
void bind_emulated(py::module_& m) {
  auto lstm_f = [](py::handle gx, py::handle w, py::handle h0, py::handle c0, py::handle bs, bool rev, py::handle y,
                   py::handle hn, py::handle cn, py::handle sg, py::handle sc, py::handle ws, const std::string& s,
                   py::handle w_hr, py::handle sm) {
    lstm_forward<Emulated>(gx, w, h0, c0, bs, rev, y, hn, cn, sg, sc, ws, s, 0, 0, w_hr, sm);
  };
  auto lstm_b = [](py::handle w, py::handle sg, py::handle sc, py::handle c0, py::handle bs, bool rev, py::handle dy,
                   py::handle dhn, py::handle dcn, py::handle dg, py::handle dh0, py::handle dc0, py::handle ws,
                   const std::string& s, py::handle w_hr, py::handle dh) {
    lstm_backward<Emulated>(w, sg, sc, c0, bs, rev, dy, dhn, dcn, dg, dh0, dc0, ws, s, 0, 0, w_hr, dh);
  };
  auto gru_f = [](py::handle gx, py::handle w, py::handle b, py::handle h0, py::handle bs, bool rev, py::handle y,
                  py::handle hn, py::handle sv, py::handle ws, const std::string& s) {
    gru_forward<Emulated>(gx, w, b, h0, bs, rev, y, hn, sv, ws, s, 0, 0);
  };
  auto gru_b = [](py::handle w, py::handle sv, py::handle h0, py::handle y, py::handle bs, bool rev, py::handle dy,
                  py::handle dhn, py::handle dgx, py::handle dgh, py::handle dh0, py::handle ws, const std::string& s) {
    gru_backward<Emulated>(w, sv, h0, y, bs, rev, dy, dhn, dgx, dgh, dh0, ws, s, 0, 0);
  };
  m.def("lstm_forward", lstm_f, py::arg("gates_x"), py::arg("w_hh"), py::arg("h0"), py::arg("c0"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("y"), py::arg("h_n"), py::arg("c_n"),
        py::arg("saved_gates").none(true), py::arg("saved_c").none(true), py::arg("workspace"),
        py::arg("strategy") = "auto", py::arg("w_hr").none(true) = py::none(),
        py::arg("saved_m").none(true) = py::none());
  m.def("lstm_backward", lstm_b, py::arg("w_hh"), py::arg("saved_gates"), py::arg("saved_c"), py::arg("c0"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
        py::arg("dgates"), py::arg("dh0").none(true), py::arg("dc0").none(true), py::arg("workspace"),
        py::arg("strategy") = "auto", py::arg("w_hr").none(true) = py::none(), py::arg("dh").none(true) = py::none());
  m.def("gru_forward", gru_f, py::arg("gates_x"), py::arg("w_hh"), py::arg("b_hh").none(true), py::arg("h0"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("y"), py::arg("h_n"),
        py::arg("saved").none(true), py::arg("workspace"), py::arg("strategy") = "auto");
  m.def("gru_backward", gru_b, py::arg("w_hh"), py::arg("saved"), py::arg("h0"), py::arg("y"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("dy"), py::arg("dh_n"), py::arg("dgates_x"),
        py::arg("dgates_h"), py::arg("dh0").none(true), py::arg("workspace"), py::arg("strategy") = "auto");
  m.def("launch_config", [](const std::string& k, const std::string& d, int64_t b, int64_t h, const std::string& s,
                            int64_t packed_steps) { return launch_config<Emulated>(k, d, b, h, s, 0, packed_steps); },
        py::arg("kernel"), py::arg("dtype"), py::arg("batch"), py::arg("hidden_size"), py::arg("strategy") = "auto",
        py::arg("packed_steps") = 0);
  m.def("device_properties", [] { return properties_dict(Emulated::properties(0)); });
  m.def("check_emulation", [](const std::string& name) {
    try {
      fastgates::cuda_emulated::check_emulation(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }, py::arg("name"), "Runs a kernel that checks one promise of the CUDA emulation (for tests).");
}

#if defined(FG_WITH_CUDA)
void bind_gpu(py::module_& m) {
  m.def("lstm_forward", &lstm_forward<Gpu>, py::arg("gates_x"), py::arg("w_hh"), py::arg("h0"), py::arg("c0"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("y"), py::arg("h_n"), py::arg("c_n"),
        py::arg("saved_gates").none(true), py::arg("saved_c").none(true), py::arg("workspace"),
        py::arg("strategy"), py::arg("device"), py::arg("stream"), py::arg("w_hr").none(true) = py::none(),
        py::arg("saved_m").none(true) = py::none());
  m.def("lstm_backward", &lstm_backward<Gpu>, py::arg("w_hh"), py::arg("saved_gates"), py::arg("saved_c"),
        py::arg("c0"), py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("dy"), py::arg("dh_n"),
        py::arg("dc_n"), py::arg("dgates"), py::arg("dh0").none(true), py::arg("dc0").none(true), py::arg("workspace"),
        py::arg("strategy"), py::arg("device"), py::arg("stream"), py::arg("w_hr").none(true) = py::none(),
        py::arg("dh").none(true) = py::none());
  m.def("gru_forward", &gru_forward<Gpu>, py::arg("gates_x"), py::arg("w_hh"), py::arg("b_hh").none(true),
        py::arg("h0"), py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("y"), py::arg("h_n"),
        py::arg("saved").none(true), py::arg("workspace"), py::arg("strategy"), py::arg("device"),
        py::arg("stream"));
  m.def("gru_backward", &gru_backward<Gpu>, py::arg("w_hh"), py::arg("saved"), py::arg("h0"), py::arg("y"),
        py::arg("batch_sizes").none(true), py::arg("reverse"), py::arg("dy"), py::arg("dh_n"), py::arg("dgates_x"),
        py::arg("dgates_h"), py::arg("dh0").none(true), py::arg("workspace"), py::arg("strategy"), py::arg("device"),
        py::arg("stream"));
  m.def("launch_config", &launch_config<Gpu>, py::arg("kernel"), py::arg("dtype"), py::arg("batch"),
        py::arg("hidden_size"), py::arg("strategy"), py::arg("device"), py::arg("packed_steps") = 0);
  m.def("device_properties", [](int device) { return properties_dict(Gpu::properties(device)); }, py::arg("device"));
}
#endif

}  // namespace

void bind_cuda(py::module_& m) {
  m.def("build_info", &build_info,
        "What this build of fastgates._C contains: cuda (bool: CUDA kernels compiled), cuda_archs, "
        "cuda_version, cuda_emulated, cpu_isas.");
  m.def("cuda_choose_strategy", [](int64_t batch, int64_t hidden, int gates, int bytes, int sm_count,
                                   size_t shared_bytes_per_block, bool cooperative_launch) {
    try {
      return config_dict(cuda::choose_strategy(batch, hidden, gates, bytes,
                                               {sm_count, shared_bytes_per_block, cooperative_launch}));
    } catch (const std::invalid_argument& e) {
      throw py::value_error(std::string("cuda_choose_strategy: ") + e.what());
    }
  }, py::arg("batch"), py::arg("hidden_size"), py::arg("gates"), py::arg("dtype_bytes"), py::arg("sm_count"),
     py::arg("shared_bytes_per_block"), py::arg("cooperative_launch"),
     "The CUDA kernels' strategy heuristic (csrc/cuda/kernels.h) for a given device: the launch configuration.");
  py::module_ emulated = m.def_submodule(
      "cuda_emulated", "The CUDA kernels run on the CPU by fastgates' CUDA emulation (for tests; CPU tensors).");
  bind_emulated(emulated);
#if defined(FG_WITH_CUDA)
  py::module_ gpu = m.def_submodule("cuda", "The CUDA kernels (CUDA tensors); see fastgates/_cuda.py.");
  bind_gpu(gpu);
#endif
}
