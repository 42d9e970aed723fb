"""The CUDA kernels (csrc/cuda/), run on the CPU by fastgates' CUDA emulation
(``_C.cuda_emulated``: the same kernel sources compiled by the host compiler).

Each test composes the kernels the way the custom ops will on the GPU (gates_x by a torch
GEMM, then the kernel; backward: the kernel, then torch GEMMs for dx and the weight and bias
gradients; see fastgates/_cuda.py) and compares with the NumPy float64 reference and with the
CPU kernels. Shapes are small: every emulated CUDA thread is a CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastgates
from fastgates import reference
from fastgates._backend import C

pytestmark = pytest.mark.cuda_emulated

EMU = C().cuda_emulated
STRATEGIES = ("per_step", "persistent")
# (T, B, I, H): a single step and batch row; H and B not multiples of the block's 8 units or
# 4 batch rows; a grid of several unit slices and batch tiles.
SHAPES = [(1, 1, 2, 3), (3, 5, 4, 13), (4, 6, 3, 19)]
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
               torch.bfloat16: "bfloat16"}
HALF_TYPES = (torch.float16, torch.bfloat16)


def tolerance(dtype):
    return {
        torch.float64: {"rtol": 1e-10, "atol": 1e-11},
        torch.float32: {"rtol": 2e-4, "atol": 2e-5},
        # Inputs, saved activations and outputs rounded to 11 or 8 significant bits.
        torch.float16: {"rtol": 1e-2, "atol": 1e-2},
        torch.bfloat16: {"rtol": 6e-2, "atol": 6e-2},
    }[dtype]


def close(actual, expected, dtype, what):
    expected = torch.as_tensor(np.asarray(expected), dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, **tolerance(dtype), msg=lambda m: f"{what}: {m}")


def workspace(kernel, dtype, B, H, strategy, batch_sizes=None):
    packed_steps = 0 if batch_sizes is None else len(batch_sizes)
    config = EMU.launch_config(kernel, DTYPE_NAMES[dtype], B, H, strategy, packed_steps)
    assert config["strategy"] == strategy or strategy == "auto"
    return torch.empty(config["workspace_bytes"], dtype=torch.uint8)


def gemm_input(a, w_t, bias):
    """a @ w_t + bias as a GPU GEMM would give it: accumulated in float (double here), rounded once."""
    return (a.double() @ w_t.double() + bias.double()).to(a.dtype).contiguous()


def problem(G, T, B, I, H, dtype, seed=0, lengths=None, proj_size=0):
    """Padded [T, B, ·] sequence arrays, or packed [N, ·] ones for sequences of these `lengths`
    (non-increasing: B = len(lengths), T = lengths[0]). With proj_size P, an LSTM with a
    projection: w_hr [P, H], and h0, dy, dh_n, w_hh's columns of width P."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1).mul(scale).to(dtype)

    lead = (T, B) if lengths is None else (sum(lengths),)
    B = B if lengths is None else len(lengths)
    k, K = 1 / H**0.5, proj_size or H
    p = {
        "x": rnd(*lead, I), "w_ih": rnd(G * H, I, scale=k), "w_hh": rnd(G * H, K, scale=k),
        "b_ih": rnd(G * H, scale=k), "b_hh": rnd(G * H, scale=k), "h0": rnd(B, K), "c0": rnd(B, H),
        "dy": rnd(*lead, K), "dh_n": rnd(B, K), "dc_n": rnd(B, H),
    }
    if proj_size:
        p["w_hr"] = rnd(proj_size, H, scale=k)
    return p


def batch_sizes_of(lengths):
    """torch's PackedSequence.batch_sizes for sequences of these (non-increasing) lengths."""
    return torch.tensor([sum(n > t for n in lengths) for t in range(lengths[0])], dtype=torch.int64)


def np64(p):
    return {k: v.double().numpy() for k, v in p.items()}


def previous_h(h0, y):
    return torch.cat([h0[None], y[:-1]])


def sizes(p):
    """(leading shape of the sequence arrays, B, H) of a problem."""
    return p["x"].shape[:-1], p["h0"].shape[0], p["w_hh"].shape[1]


def lstm_emulated(p, strategy, *, save=True, batch_sizes=None, reverse=False):
    lead, B, H = sizes(p)
    dtype = p["x"].dtype
    gates_x = gemm_input(p["x"], p["w_ih"].T, p["b_ih"].double() + p["b_hh"].double())
    y, h_n, c_n = torch.empty(*lead, H, dtype=dtype), torch.empty(B, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    saved_gates = torch.empty(*lead, 4 * H, dtype=dtype) if save else None
    saved_c = torch.empty(*lead, H, dtype=dtype) if save else None
    EMU.lstm_forward(gates_x, p["w_hh"], p["h0"], p["c0"], batch_sizes, reverse, y, h_n, c_n, saved_gates, saved_c,
                     workspace("lstm_forward", dtype, B, H, strategy, batch_sizes), strategy)
    return {"y": y, "h_n": h_n, "c_n": c_n, "saved_gates": saved_gates, "saved_c": saved_c}


def lstm_emulated_backward(p, fwd, strategy, *, batch_sizes=None, reverse=False, want_h0=True, want_c0=True):
    """want_h0 / want_c0 False: the kernel gets None for dh0 / dc0 (not wanted)."""
    lead, B, H = sizes(p)
    dtype = p["x"].dtype
    dgates = torch.empty(*lead, 4 * H, dtype=dtype)
    dh0 = torch.empty(B, H, dtype=dtype) if want_h0 else None
    dc0 = torch.empty(B, H, dtype=dtype) if want_c0 else None
    EMU.lstm_backward(p["w_hh"], fwd["saved_gates"], fwd["saved_c"], p["c0"], batch_sizes, reverse, p["dy"],
                      p["dh_n"], p["dc_n"], dgates, dh0, dc0,
                      workspace("lstm_backward", dtype, B, H, strategy, batch_sizes), strategy)
    return {"dgates": dgates, "h0": dh0, "c0": dc0}


def lstm_emulated_grad(p, fwd, strategy):
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    out = lstm_emulated_backward(p, fwd, strategy)
    # The op's GEMMs (here in float64 for every dtype).
    g, d = out["dgates"].view(T * B, 4 * H).double(), {k: v.double() for k, v in p.items()}
    db = g.sum(0)
    return {
        **out, "x": (g @ d["w_ih"]).view(T, B, I), "w_ih": g.T @ d["x"].reshape(T * B, I),
        "w_hh": g.T @ previous_h(d["h0"], fwd["y"].double()).reshape(T * B, H), "b_ih": db, "b_hh": db,
    }


def gru_emulated(p, strategy, *, save=True, bias_hh=True, batch_sizes=None, reverse=False):
    lead, B, H = sizes(p)
    dtype = p["x"].dtype
    gates_x = gemm_input(p["x"], p["w_ih"].T, p["b_ih"])
    y, h_n = torch.empty(*lead, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    saved = torch.empty(*lead, 4 * H, dtype=dtype) if save else None
    EMU.gru_forward(gates_x, p["w_hh"], p["b_hh"] if bias_hh else None, p["h0"], batch_sizes, reverse, y, h_n, saved,
                    workspace("gru_forward", dtype, B, H, strategy, batch_sizes), strategy)
    return {"y": y, "h_n": h_n, "saved": saved}


def gru_emulated_backward(p, fwd, strategy, *, batch_sizes=None, reverse=False, want_h0=True):
    lead, B, H = sizes(p)
    dtype = p["x"].dtype
    dgx, dgh = torch.empty(*lead, 3 * H, dtype=dtype), torch.empty(*lead, 3 * H, dtype=dtype)
    dh0 = torch.empty(B, H, dtype=dtype) if want_h0 else None
    EMU.gru_backward(p["w_hh"], fwd["saved"], p["h0"], fwd["y"], batch_sizes, reverse, p["dy"], p["dh_n"], dgx, dgh,
                     dh0, workspace("gru_backward", dtype, B, H, strategy, batch_sizes), strategy)
    return {"dgates_x": dgx, "dgates_h": dgh, "h0": dh0}


def gru_emulated_grad(p, fwd, strategy):
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    out = gru_emulated_backward(p, fwd, strategy)
    gx, gh = out["dgates_x"].view(T * B, 3 * H).double(), out["dgates_h"].view(T * B, 3 * H).double()
    d = {k: v.double() for k, v in p.items()}
    return {
        **out, "x": (gx @ d["w_ih"]).view(T, B, I), "w_ih": gx.T @ d["x"].reshape(T * B, I),
        "w_hh": gh.T @ previous_h(d["h0"], fwd["y"].double()).reshape(T * B, H), "b_ih": gx.sum(0),
        "b_hh": gh.sum(0),
    }


# float16/bfloat16: one shape (they share every code path with float32 but the loads and stores).
CASES = [(shape, dtype) for shape in SHAPES for dtype in (torch.float64, torch.float32)] + [
    (SHAPES[1], dtype) for dtype in HALF_TYPES]
CASE_IDS = ["T{}B{}I{}H{}-{}".format(*shape, DTYPE_NAMES[dtype]) for shape, dtype in CASES]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shape, dtype", CASES, ids=CASE_IDS)
def test_lstm_matches_reference(shape, dtype, strategy):
    p = problem(4, *shape, dtype)
    r = np64(p)
    fwd = lstm_emulated(p, strategy)
    y, (h_n, c_n) = reference.lstm(r["x"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"], r["h0"], r["c0"])
    close(fwd["y"], y, dtype, "y")
    close(fwd["h_n"], h_n, dtype, "h_n")
    close(fwd["c_n"], c_n, dtype, "c_n")
    grad = lstm_emulated_grad(p, fwd, strategy)
    expected = reference.lstm_grad(r["x"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"], r["h0"], r["c0"],
                                   r["dy"], r["dh_n"], r["dc_n"])
    for name, value in expected.items():
        close(grad[name], value, dtype, f"d{name}")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shape, dtype", CASES, ids=CASE_IDS)
def test_gru_matches_reference(shape, dtype, strategy):
    p = problem(3, *shape, dtype)
    r = np64(p)
    fwd = gru_emulated(p, strategy)
    y, h_n = reference.gru(r["x"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"], r["h0"])
    close(fwd["y"], y, dtype, "y")
    close(fwd["h_n"], h_n, dtype, "h_n")
    grad = gru_emulated_grad(p, fwd, strategy)
    expected = reference.gru_grad(r["x"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"], r["h0"], r["dy"], r["dh_n"])
    for name, value in expected.items():
        close(grad[name], value, dtype, f"d{name}")


def cpu_workspace(kernel, p, batch_sizes, input_size):
    _, B, H = sizes(p)
    T = p["x"].shape[0] if batch_sizes is None else len(batch_sizes)
    size = C().workspace_bytes(kernel, DTYPE_NAMES[p["x"].dtype], T, B, input_size, H, 1)
    return torch.empty(size, dtype=torch.uint8)


def cpu_kernel_lstm(p, batch_sizes=None, reverse=False):
    """The CPU kernels (csrc/cpu/) on the same problem: forward and backward."""
    lead, B, H = sizes(p)
    I = p["x"].shape[-1]
    e = lambda *s: torch.empty(*s, dtype=p["x"].dtype)  # noqa: E731
    out = {"gates_x": e(*lead, 4 * H), "y": e(*lead, H), "h_n": e(B, H), "c_n": e(B, H),
           "saved_gates": e(*lead, 4 * H), "saved_c": e(*lead, H)}
    C().lstm_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], None, p["h0"], p["c0"], batch_sizes,
                     reverse, out["gates_x"], out["y"], out["h_n"], out["c_n"], out["saved_gates"], out["saved_c"],
                     None, cpu_workspace("lstm_forward", p, batch_sizes, I), 1)
    dgates, dh0, dc0 = e(*lead, 4 * H), e(B, H), e(B, H)
    C().lstm_backward(p["w_hh"], None, out["saved_gates"], out["saved_c"], p["c0"], batch_sizes, reverse, p["dy"],
                      p["dh_n"], p["dc_n"], dgates, None, dh0, dc0, cpu_workspace("lstm_backward", p, batch_sizes, 0),
                      1)
    out.update(dgates=dgates, h0=dh0, c0=dc0)
    return out


def cpu_kernel_gru(p, batch_sizes=None, reverse=False):
    lead, B, H = sizes(p)
    I = p["x"].shape[-1]
    e = lambda *s: torch.empty(*s, dtype=p["x"].dtype)  # noqa: E731
    out = {"gates_x": e(*lead, 3 * H), "y": e(*lead, H), "h_n": e(B, H), "saved": e(*lead, 4 * H)}
    C().gru_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], p["h0"], batch_sizes, reverse,
                    out["gates_x"], out["y"], out["h_n"], out["saved"], cpu_workspace("gru_forward", p, batch_sizes, I),
                    1)
    dgx, dgh, dh0 = e(*lead, 3 * H), e(*lead, 3 * H), e(B, H)
    C().gru_backward(p["w_hh"], out["saved"], p["h0"], out["y"], batch_sizes, reverse, p["dy"], p["dh_n"], dgx, dgh,
                     dh0, cpu_workspace("gru_backward", p, batch_sizes, 0), 1)
    out.update(dgates_x=dgx, dgates_h=dgh, h0=dh0)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lstm_matches_the_cpu_kernels_and_strategies_agree_bitwise(dtype):
    p = problem(4, 3, 5, 4, 13, dtype, seed=1)
    cpu = cpu_kernel_lstm(p)
    results = []
    for strategy in STRATEGIES:
        fwd = lstm_emulated(p, strategy)
        results.append({**fwd, **lstm_emulated_grad(p, fwd, strategy)})
    for name in ("y", "h_n", "c_n", "saved_gates", "saved_c", "dgates", "h0", "c0"):
        close(results[0][name], cpu[name].double(), dtype, name)
        # The same sums in the same order whether the weights come from global or shared memory.
        assert torch.equal(results[0][name], results[1][name]), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gru_matches_the_cpu_kernels_and_strategies_agree_bitwise(dtype):
    p = problem(3, 3, 5, 4, 13, dtype, seed=2)
    cpu = cpu_kernel_gru(p)
    results = []
    for strategy in STRATEGIES:
        fwd = gru_emulated(p, strategy)
        results.append({**fwd, **gru_emulated_grad(p, fwd, strategy)})
    for name in ("y", "h_n", "saved", "dgates_x", "dgates_h", "h0"):
        close(results[0][name], cpu[name].double(), dtype, name)
        assert torch.equal(results[0][name], results[1][name]), name


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_forward_without_saving_and_gru_without_recurrent_bias(strategy):
    p = problem(4, 2, 3, 2, 5, torch.float64, seed=3)
    inference, training = lstm_emulated(p, strategy, save=False), lstm_emulated(p, strategy)
    for name in ("y", "h_n", "c_n"):
        assert torch.equal(inference[name], training[name]), name
    p = problem(3, 2, 3, 2, 5, torch.float64, seed=4)
    fwd = gru_emulated(p, strategy, save=False, bias_hh=False)
    r = np64(p)
    y, h_n = reference.gru(r["x"], r["w_ih"], r["w_hh"], r["b_ih"], np.zeros_like(r["b_hh"]), r["h0"])
    close(fwd["y"], y, torch.float64, "y")
    close(fwd["h_n"], h_n, torch.float64, "h_n")


def test_auto_picks_a_strategy_that_gives_the_same_result():
    p = problem(4, 2, 3, 2, 6, torch.float64, seed=5)
    assert torch.equal(lstm_emulated(p, "auto")["y"], lstm_emulated(p, "per_step")["y"])


# The heuristic (csrc/cuda/kernels.h) on the sizes its documentation gives, for an A100-like
# device (108 SMs, 163 KiB of shared memory per block).
A100 = {"sm_count": 108, "shared_bytes_per_block": 166912, "cooperative_launch": True}


@pytest.mark.parametrize("batch, hidden, gates, dtype_bytes, device, expected", [
    (8, 256, 4, 4, A100, ("persistent", 5)),
    (4, 512, 3, 8, A100, ("persistent", 5)),
    (64, 1024, 4, 4, A100, ("per_step", 8)),      # 16 batch tiles: 171 units per block
    (1, 1024, 4, 4, A100, ("per_step", 8)),       # the 10-unit slice needs 165 KiB
    (512, 64, 4, 4, A100, ("per_step", 8)),       # more batch tiles than SMs
    (8, 256, 4, 4, {**A100, "cooperative_launch": False}, ("per_step", 8)),
    (1, 3, 4, 8, A100, ("persistent", 1)),
    (1, 3, 3, 4, {**A100, "sm_count": 1}, ("persistent", 3)),
])
def test_strategy_heuristic(batch, hidden, gates, dtype_bytes, device, expected):
    config = C().cuda_choose_strategy(batch, hidden, gates, dtype_bytes, **device)
    assert (config["strategy"], config["units_per_block"]) == expected
    assert config["threads"] == gates * config["units_per_block"] * config["reduction_lanes"] <= 1024
    assert config["grid"][0] * config["units_per_block"] >= hidden
    assert config["grid"][1] == -(-batch // 4)
    # The grid barrier, then the running state in the compute type.
    assert config["workspace_bytes"] == 16 + batch * hidden * (8 if dtype_bytes == 8 else 4)
    if config["strategy"] == "persistent":
        assert config["grid"][0] * config["grid"][1] <= device["sm_count"]
        assert config["shared_bytes"] <= device["shared_bytes_per_block"]
    else:
        assert config["shared_bytes"] <= 48 * 1024


def test_heuristic_rejects_bad_sizes():
    with pytest.raises(ValueError, match="gates"):
        C().cuda_choose_strategy(1, 8, 5, 4, **A100)
    with pytest.raises(ValueError, match="at least 1"):
        C().cuda_choose_strategy(0, 8, 4, 4, **A100)


def valid_lstm_args(dtype=torch.float64, T=2, B=2, H=3):
    e = lambda *s: torch.zeros(*s, dtype=dtype)  # noqa: E731
    return dict(gates_x=e(T, B, 4 * H), w_hh=e(4 * H, H), h0=e(B, H), c0=e(B, H), batch_sizes=None, reverse=False,
                y=e(T, B, H), h_n=e(B, H), c_n=e(B, H), saved_gates=e(T, B, 4 * H), saved_c=e(T, B, H),
                workspace=torch.zeros(64, dtype=torch.uint8))


def test_valid_arguments_run():
    EMU.lstm_forward(**valid_lstm_args(), strategy="per_step")


@pytest.mark.parametrize("change, error, match", [
    (lambda a: a.update(w_hh=a["w_hh"].float()), ValueError, "dtype"),
    (lambda a: a.update(h0=torch.zeros(2, 4, dtype=torch.float64)), ValueError, "shape"),
    (lambda a: a.update(y=torch.zeros(2, 3, 2, dtype=torch.float64).transpose(1, 2)), ValueError, "contiguous"),
    (lambda a: a.update(h_n=a["c_n"]), ValueError, "shares? memory"),
    (lambda a: a.update(y=a["gates_x"].view(-1)[:12].view(2, 2, 3)), ValueError, "shares? memory"),
    (lambda a: a.update(saved_c=None), ValueError, "together"),
    (lambda a: a.update(gates_x=a["gates_x"].to(torch.int32)), ValueError, "not supported"),
    (lambda a: a.update(gates_x=a["gates_x"].half()), ValueError, "has dtype"),
    (lambda a: a.update(workspace=a["y"].view(-1).view(torch.uint8)), ValueError, "shares? memory"),
    (lambda a: a.update(gates_x=torch.zeros(2, 2, dtype=torch.float64)), ValueError, "dimensions"),
    (lambda a: a.update(w_hh=[[0.0]]), TypeError, "torch.Tensor"),
    (lambda a: a.update(strategy="fastest"), ValueError, "strategy"),
])
def test_bad_arguments_raise(change, error, match):
    args = {**valid_lstm_args(), "strategy": "per_step"}
    change(args)
    with pytest.raises(error, match=match):
        EMU.lstm_forward(**args)


def test_persistent_strategy_rejects_problems_it_cannot_run():
    # The emulated device has 8 SMs: 40 batch rows are 10 tiles.
    args = valid_lstm_args(B=40)
    with pytest.raises(ValueError, match="persistent strategy cannot run"):
        EMU.lstm_forward(**args, strategy="persistent")
    # Too little workspace for the grid barrier.
    args = valid_lstm_args()
    args["workspace"] = torch.zeros(0, dtype=torch.uint8)
    with pytest.raises(ValueError, match="workspace"):
        EMU.lstm_forward(**args, strategy="persistent")


def test_backward_arguments_are_checked():
    T, B, H = 2, 2, 3
    e = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
    with pytest.raises(ValueError, match="shares memory|share memory"):
        dh0 = e(B, H)
        EMU.lstm_backward(e(4 * H, H), e(T, B, 4 * H), e(T, B, H), e(B, H), None, False, e(T, B, H), e(B, H), e(B, H),
                          e(T, B, 4 * H), dh0, dh0, torch.zeros(64, dtype=torch.uint8), "auto")
    with pytest.raises(ValueError, match="shape"):
        EMU.gru_backward(e(3 * H, H), e(T, B, 3 * H), e(B, H), e(T, B, H), None, False, e(T, B, H), e(B, H),
                         e(T, B, 3 * H),
                         e(T, B, 3 * H), e(B, H), torch.zeros(64, dtype=torch.uint8), "auto")
    with pytest.raises(ValueError, match="b_hh"):
        EMU.gru_forward(e(T, B, 3 * H), e(3 * H, H), e(4 * H), e(B, H), None, False, e(T, B, H), e(B, H), None,
                        torch.zeros(64, dtype=torch.uint8), "auto")
    # dy as one row for every row (dy_one_row): [H]; another length is refused.
    for dy, message in [(e(H + 1), r"argument 'dy' has shape \(4,\), expected \(3,\)"),
                        (e(B, H), r"argument 'dy' has shape \(2, 3\), expected \(2, 2, 3\)")]:
        with pytest.raises(ValueError, match=message):
            EMU.lstm_backward(e(4 * H, H), e(T, B, 4 * H), e(T, B, H), e(B, H), None, False, dy, e(B, H), e(B, H),
                              e(T, B, 4 * H), e(B, H), e(B, H), torch.zeros(1 << 16, dtype=torch.uint8), "auto")
        with pytest.raises(ValueError, match=message):
            EMU.gru_backward(e(3 * H, H), e(T, B, 4 * H), e(B, H), e(T, B, H), None, False, dy, e(B, H),
                             e(T, B, 3 * H), e(T, B, 3 * H), e(B, H), torch.zeros(1 << 16, dtype=torch.uint8), "auto")


def test_build_info_reports_the_emulation():
    info = fastgates.build_info()
    assert info["cuda_emulated"] is True
    assert isinstance(info["cuda"], bool)
    assert "generic" in info["cpu_isas"]


@pytest.mark.parametrize("name, match", [
    ("divergent_barrier", "divergence"),
    ("too_many_threads", "more than 1024 threads"),
    ("too_much_shared_memory", "shared memory"),
    ("exception", "thrown by thread 3"),
])
def test_emulation_rejects_kernels_that_break_its_rules(name, match):
    with pytest.raises(RuntimeError, match=match):
        EMU.check_emulation(name)


@pytest.mark.parametrize("name", ["private_shared_memory", "grid_barrier"])
def test_emulation_keeps_its_promises(name):
    EMU.check_emulation(name)


def test_unknown_emulation_check():
    with pytest.raises(ValueError, match="unknown"):
        EMU.check_emulation("nothing")


# Packed sequences and the reverse direction: the same semantics as the CPU kernels
# (csrc/cpu/kernels.h: SequenceLayout), compared with them on the same inputs. Layouts: (T, B)
# when padded, else the lengths of the packed sequences (non-increasing).
LAYOUTS = [
    pytest.param((3, 6), None, True, id="padded-reverse"),
    pytest.param((1, 3), None, True, id="padded-T1-reverse"),
    pytest.param(None, [5, 5, 3, 1], False, id="packed-repeated-sizes"),
    pytest.param(None, [5, 5, 3, 1], True, id="packed-repeated-sizes-reverse"),
    pytest.param(None, [7, 6, 4, 4, 3, 2, 1], False, id="packed-strictly-decreasing"),
    pytest.param(None, [7, 6, 4, 4, 3, 2, 1], True, id="packed-strictly-decreasing-reverse"),
    pytest.param(None, [4], True, id="packed-B1-reverse"),
    pytest.param(None, [1, 1, 1], False, id="packed-T1"),
]
# Every layout in float64; float32 (the same code paths but the loads and stores) on two.
LAYOUT_CASES = [pytest.param(*case.values, torch.float64, id=f"{case.id}-float64") for case in LAYOUTS] + [
    pytest.param(*case.values, torch.float32, id=f"{case.id}-float32") for case in LAYOUTS
    if case.id in ("padded-reverse", "packed-repeated-sizes-reverse")
]
I_PACKED, H_PACKED = 3, 10


def layout_problem(G, padded, lengths, dtype, seed):
    if lengths is None:
        return problem(G, *padded, I_PACKED, H_PACKED, dtype, seed), None
    return problem(G, 0, 0, I_PACKED, H_PACKED, dtype, seed, lengths=lengths), batch_sizes_of(lengths)


def compare_strategies_with_cpu(emulated, cpu, names, dtype):
    for name in names:
        close(emulated[0][name], cpu[name].double(), dtype, name)
        # The same sums in the same order whether the weights come from global or shared memory.
        assert torch.equal(emulated[0][name], emulated[1][name]), name


@pytest.mark.parametrize("padded, lengths, reverse, dtype", LAYOUT_CASES)
def test_lstm_packed_and_reverse_match_the_cpu_kernels(padded, lengths, reverse, dtype):
    p, batch_sizes = layout_problem(4, padded, lengths, dtype, seed=11)
    cpu = cpu_kernel_lstm(p, batch_sizes, reverse)
    results = []
    for strategy in STRATEGIES:
        fwd = lstm_emulated(p, strategy, batch_sizes=batch_sizes, reverse=reverse)
        results.append({**fwd, **lstm_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse)})
    compare_strategies_with_cpu(results, cpu, ("y", "h_n", "c_n", "saved_gates", "saved_c", "dgates", "h0", "c0"),
                                dtype)


@pytest.mark.parametrize("padded, lengths, reverse, dtype", LAYOUT_CASES)
def test_gru_packed_and_reverse_match_the_cpu_kernels(padded, lengths, reverse, dtype):
    p, batch_sizes = layout_problem(3, padded, lengths, dtype, seed=12)
    cpu = cpu_kernel_gru(p, batch_sizes, reverse)
    results = []
    for strategy in STRATEGIES:
        fwd = gru_emulated(p, strategy, batch_sizes=batch_sizes, reverse=reverse)
        results.append({**fwd, **gru_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse)})
    compare_strategies_with_cpu(results, cpu, ("y", "h_n", "saved", "dgates_x", "dgates_h", "h0"), dtype)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("padded, lengths, reverse, dtype", LAYOUT_CASES)
def test_backward_without_initial_state_gradients_changes_no_other_output(padded, lengths, reverse, dtype, strategy):
    """dh0 (and dc0) None: the kernels skip the products only dh0 needs (and the pass after the
    last step); every output still asked for is bit-identical to a call that wants them all."""
    p, batch_sizes = layout_problem(4, padded, lengths, dtype, seed=15)
    fwd = lstm_emulated(p, strategy, batch_sizes=batch_sizes, reverse=reverse)
    full = lstm_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse)
    for want_h0, want_c0 in ((False, True), (True, False), (False, False)):
        part = lstm_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse, want_h0=want_h0,
                                      want_c0=want_c0)
        assert (part["h0"] is None) != want_h0 and (part["c0"] is None) != want_c0
        for name in ("dgates", "h0", "c0"):
            if part[name] is not None:
                assert torch.equal(part[name], full[name]), (name, want_h0, want_c0)
    p, batch_sizes = layout_problem(3, padded, lengths, dtype, seed=16)
    fwd = gru_emulated(p, strategy, batch_sizes=batch_sizes, reverse=reverse)
    full = gru_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse)
    part = gru_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse, want_h0=False)
    assert part["h0"] is None
    for name in ("dgates_x", "dgates_h"):
        assert torch.equal(part[name], full[name]), name


def test_long_packed_sequences_fill_the_step_table_in_several_launches():
    """T + 1 = 301 step offsets: the persistent kernels' table is written 256 at a time."""
    p = problem(3, 0, 0, 2, 2, torch.float64, seed=14, lengths=[300, 260, 3])
    batch_sizes = batch_sizes_of([300, 260, 3])
    cpu = cpu_kernel_gru(p, batch_sizes, True)
    fwd = gru_emulated(p, "persistent", batch_sizes=batch_sizes, reverse=True)
    grad = gru_emulated_backward(p, fwd, "persistent", batch_sizes=batch_sizes, reverse=True)
    for name in ("y", "h_n", "saved"):
        close(fwd[name], cpu[name].double(), torch.float64, name)
    for name in ("dgates_x", "dgates_h", "h0"):
        close(grad[name], cpu[name].double(), torch.float64, name)


def test_packed_sequences_match_separate_padded_runs():
    """Each packed sequence gives what it gives alone, padded (independent of the CPU kernels)."""
    lengths = [4, 2, 1]
    p, batch_sizes = layout_problem(4, None, lengths, torch.float64, seed=13)
    packed = lstm_emulated(p, "per_step", batch_sizes=batch_sizes, reverse=True)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), batch_sizes.cumsum(0)])
    for b, n in enumerate(lengths):
        rows = offsets[:n] + b
        alone = {k: p[k][rows][:, None] if k in ("x", "dy") else p[k] for k in p}
        for k in ("h0", "c0"):
            alone[k] = p[k][b:b + 1]
        single = lstm_emulated(alone, "per_step", reverse=True)
        close(packed["y"][rows], single["y"][:, 0], torch.float64, "y")
        close(packed["h_n"][b], single["h_n"][0], torch.float64, "h_n")
        close(packed["c_n"][b], single["c_n"][0], torch.float64, "c_n")


def packed_lstm_args(H=3):
    """Valid packed arguments: batch_sizes [2, 2, 1], N = 5 rows."""
    args = valid_lstm_args(B=2, H=H)
    e = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
    args.update(gates_x=e(5, 4 * H), y=e(5, H), saved_gates=e(5, 4 * H), saved_c=e(5, H),
                batch_sizes=torch.tensor([2, 2, 1]), workspace=torch.zeros(256, dtype=torch.uint8))
    return args


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_valid_packed_arguments_run(strategy):
    EMU.lstm_forward(**packed_lstm_args(), strategy=strategy)


@pytest.mark.parametrize("change, match", [
    (lambda a: a.update(batch_sizes=torch.tensor([2, 3, 1])), "non-increasing"),
    (lambda a: a.update(batch_sizes=torch.tensor([2, 0, 0])), "at least 1"),
    (lambda a: a.update(batch_sizes=torch.tensor([2, 2, 1], dtype=torch.int32)), "dtype"),
    (lambda a: a.update(batch_sizes=torch.tensor([[2, 2, 1]])), "dimensions"),
    (lambda a: a.update(batch_sizes=torch.tensor([2, 2, 2])), "add up to"),
    (lambda a: a.update(batch_sizes=torch.tensor([3, 2])), "shape"),  # h0 has 2 rows
    (lambda a: a.update(batch_sizes=torch.tensor([2, 2, 1, 0, 0])[:5:2]), "contiguous"),
    (lambda a: a.update(gates_x=a["gates_x"].view(5, 1, 12)), "dimensions"),
    (lambda a: a.update(workspace=torch.zeros(16, dtype=torch.uint8)), "workspace"),
])
def test_bad_batch_sizes_raise(change, match):
    args = packed_lstm_args()
    change(args)
    with pytest.raises(ValueError, match=match):
        EMU.lstm_forward(**args, strategy="per_step")


def test_packed_workspace_holds_the_step_table():
    padded = EMU.launch_config("gru_backward", "float32", 3, 5, "persistent")["workspace_bytes"]
    packed = EMU.launch_config("gru_backward", "float32", 3, 5, "persistent", 7)["workspace_bytes"]
    assert packed == (padded + 15) // 16 * 16 + 8 * 8


class EmulatedGpuModule:
    """fastgates._C.cuda's entry points, run by the emulation: drops the device and stream."""

    def __getattr__(self, name):
        if name == "launch_config":
            return lambda kernel, dtype, batch, hidden, strategy, device, packed_steps: EMU.launch_config(
                kernel, dtype, batch, hidden, strategy, packed_steps)
        return lambda *args, **kwargs: getattr(EMU, name)(*args[:-2], **kwargs)


def test_cuda_wrappers_pass_packed_arguments_in_the_bindings_order(monkeypatch):
    """fastgates/_cuda.py's wrappers (workspace allocation, argument order) on the emulation."""
    from fastgates import _cuda

    monkeypatch.setattr(_cuda, "_gpu", EmulatedGpuModule)
    monkeypatch.setattr(_cuda, "_device_index", lambda tensor: 0)
    monkeypatch.setattr(_cuda, "_stream", lambda device: 0)
    lengths, reverse = [3, 2, 2], True
    batch_sizes = batch_sizes_of(lengths)
    p = problem(4, 0, 0, 2, 5, torch.float64, seed=15, lengths=lengths)
    cpu = cpu_kernel_lstm(p, batch_sizes, reverse)
    N, H, B = len(p["x"]), 5, len(lengths)
    e = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
    gates_x = gemm_input(p["x"], p["w_ih"].T, p["b_ih"] + p["b_hh"])
    out = {"y": e(N, H), "h_n": e(B, H), "c_n": e(B, H), "saved_gates": e(N, 4 * H), "saved_c": e(N, H)}
    _cuda.lstm_forward(gates_x, p["w_hh"], p["h0"], p["c0"], out["y"], out["h_n"], out["c_n"], out["saved_gates"],
                       out["saved_c"], strategy="persistent", batch_sizes=batch_sizes, reverse=reverse)
    out.update(dgates=e(N, 4 * H), h0=e(B, H), c0=e(B, H))
    _cuda.lstm_backward(p["w_hh"], out["saved_gates"], out["saved_c"], p["c0"], p["dy"], p["dh_n"], p["dc_n"],
                        out["dgates"], out["h0"], out["c0"], batch_sizes=batch_sizes, reverse=reverse)
    for name in out:
        close(out[name], cpu[name].double(), torch.float64, name)
    q = problem(3, 0, 0, 2, 5, torch.float64, seed=16, lengths=lengths)
    cpu = cpu_kernel_gru(q, batch_sizes, reverse)
    out = {"y": e(N, H), "h_n": e(B, H), "saved": e(N, 4 * H)}
    _cuda.gru_forward(gemm_input(q["x"], q["w_ih"].T, q["b_ih"]), q["w_hh"], q["b_hh"], q["h0"], out["y"],
                      out["h_n"], out["saved"], batch_sizes=batch_sizes, reverse=reverse)
    out.update(dgates_x=e(N, 3 * H), dgates_h=e(N, 3 * H), h0=e(B, H))
    _cuda.gru_backward(q["w_hh"], out["saved"], q["h0"], out["y"], q["dy"], q["dh_n"], out["dgates_x"],
                       out["dgates_h"], out["h0"], strategy="per_step", batch_sizes=batch_sizes, reverse=reverse)
    for name in out:
        close(out[name], cpu[name].double(), torch.float64, name)
