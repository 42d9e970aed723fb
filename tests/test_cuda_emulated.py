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


def workspace(kernel, dtype, B, H, strategy):
    config = EMU.launch_config(kernel, DTYPE_NAMES[dtype], B, H, strategy)
    assert config["strategy"] == strategy or strategy == "auto"
    return torch.empty(config["workspace_bytes"], dtype=torch.uint8)


def gemm_input(a, w_t, bias):
    """a @ w_t + bias as a GPU GEMM would give it: accumulated in float (double here), rounded once."""
    return (a.double() @ w_t.double() + bias.double()).to(a.dtype).contiguous()


def problem(G, T, B, I, H, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1).mul(scale).to(dtype)

    k = 1 / H**0.5
    return {
        "x": rnd(T, B, I), "w_ih": rnd(G * H, I, scale=k), "w_hh": rnd(G * H, H, scale=k),
        "b_ih": rnd(G * H, scale=k), "b_hh": rnd(G * H, scale=k), "h0": rnd(B, H), "c0": rnd(B, H),
        "dy": rnd(T, B, H), "dh_n": rnd(B, H), "dc_n": rnd(B, H),
    }


def np64(p):
    return {k: v.double().numpy() for k, v in p.items()}


def previous_h(h0, y):
    return torch.cat([h0[None], y[:-1]])


def lstm_emulated(p, strategy, *, save=True):
    T, B, _ = p["x"].shape
    H = p["w_hh"].shape[1]
    dtype = p["x"].dtype
    gates_x = gemm_input(p["x"], p["w_ih"].T, p["b_ih"].double() + p["b_hh"].double())
    y, h_n, c_n = torch.empty(T, B, H, dtype=dtype), torch.empty(B, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    saved_gates = torch.empty(T, B, 4 * H, dtype=dtype) if save else None
    saved_c = torch.empty(T, B, H, dtype=dtype) if save else None
    EMU.lstm_forward(gates_x, p["w_hh"], p["h0"], p["c0"], y, h_n, c_n, saved_gates, saved_c,
                     workspace("lstm_forward", dtype, B, H, strategy), strategy)
    return {"y": y, "h_n": h_n, "c_n": c_n, "saved_gates": saved_gates, "saved_c": saved_c}


def lstm_emulated_grad(p, fwd, strategy):
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    dtype = p["x"].dtype
    dgates = torch.empty(T, B, 4 * H, dtype=dtype)
    dh0, dc0 = torch.empty(B, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    EMU.lstm_backward(p["w_hh"], fwd["saved_gates"], fwd["saved_c"], p["c0"], p["dy"], p["dh_n"], p["dc_n"],
                      dgates, dh0, dc0, workspace("lstm_backward", dtype, B, H, strategy), strategy)
    # The op's GEMMs (here in float64 for every dtype).
    g, d = dgates.view(T * B, 4 * H).double(), {k: v.double() for k, v in p.items()}
    db = g.sum(0)
    return {
        "dgates": dgates, "x": (g @ d["w_ih"]).view(T, B, I), "w_ih": g.T @ d["x"].reshape(T * B, I),
        "w_hh": g.T @ previous_h(d["h0"], fwd["y"].double()).reshape(T * B, H), "b_ih": db, "b_hh": db,
        "h0": dh0, "c0": dc0,
    }


def gru_emulated(p, strategy, *, save=True, bias_hh=True):
    T, B, _ = p["x"].shape
    H = p["w_hh"].shape[1]
    dtype = p["x"].dtype
    gates_x = gemm_input(p["x"], p["w_ih"].T, p["b_ih"])
    y, h_n = torch.empty(T, B, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    saved = torch.empty(T, B, 4 * H, dtype=dtype) if save else None
    EMU.gru_forward(gates_x, p["w_hh"], p["b_hh"] if bias_hh else None, p["h0"], y, h_n, saved,
                    workspace("gru_forward", dtype, B, H, strategy), strategy)
    return {"y": y, "h_n": h_n, "saved": saved}


def gru_emulated_grad(p, fwd, strategy):
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    dtype = p["x"].dtype
    dgx, dgh = torch.empty(T, B, 3 * H, dtype=dtype), torch.empty(T, B, 3 * H, dtype=dtype)
    dh0 = torch.empty(B, H, dtype=dtype)
    EMU.gru_backward(p["w_hh"], fwd["saved"], p["h0"], fwd["y"], p["dy"], p["dh_n"], dgx, dgh, dh0,
                     workspace("gru_backward", dtype, B, H, strategy), strategy)
    gx, gh = dgx.view(T * B, 3 * H).double(), dgh.view(T * B, 3 * H).double()
    d = {k: v.double() for k, v in p.items()}
    return {
        "dgates_x": dgx, "dgates_h": dgh, "x": (gx @ d["w_ih"]).view(T, B, I), "w_ih": gx.T @ d["x"].reshape(T * B, I),
        "w_hh": gh.T @ previous_h(d["h0"], fwd["y"].double()).reshape(T * B, H), "b_ih": gx.sum(0),
        "b_hh": gh.sum(0), "h0": dh0,
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


def cpu_kernel_lstm(p):
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    dtype, name = p["x"].dtype, DTYPE_NAMES[p["x"].dtype]
    e = lambda *s: torch.empty(*s, dtype=dtype)  # noqa: E731
    out = {"gates_x": e(T, B, 4 * H), "y": e(T, B, H), "h_n": e(B, H), "c_n": e(B, H),
           "saved_gates": e(T, B, 4 * H), "saved_c": e(T, B, H)}
    ws = torch.empty(C().workspace_bytes("lstm_forward", name, T, B, I, H, 1), dtype=torch.uint8)
    C().lstm_forward(p["x"], p["w_ih"], p["b_ih"] + p["b_hh"], p["w_hh"], p["h0"], p["c0"], out["gates_x"], out["y"],
                     out["h_n"], out["c_n"], out["saved_gates"], out["saved_c"], ws, 1)
    dgates, dh0, dc0 = e(T, B, 4 * H), e(B, H), e(B, H)
    ws = torch.empty(C().workspace_bytes("lstm_backward", name, T, B, 0, H, 1), dtype=torch.uint8)
    C().lstm_backward(p["w_hh"], out["saved_gates"], out["saved_c"], p["c0"], p["dy"], p["dh_n"], p["dc_n"],
                      dgates, dh0, dc0, ws, 1)
    out.update(dgates=dgates, h0=dh0, c0=dc0)
    return out


def cpu_kernel_gru(p):
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    dtype, name = p["x"].dtype, DTYPE_NAMES[p["x"].dtype]
    e = lambda *s: torch.empty(*s, dtype=dtype)  # noqa: E731
    out = {"gates_x": e(T, B, 3 * H), "y": e(T, B, H), "h_n": e(B, H), "saved": e(T, B, 4 * H)}
    ws = torch.empty(C().workspace_bytes("gru_forward", name, T, B, I, H, 1), dtype=torch.uint8)
    C().gru_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], p["h0"], out["gates_x"], out["y"],
                    out["h_n"], out["saved"], ws, 1)
    dgx, dgh, dh0 = e(T, B, 3 * H), e(T, B, 3 * H), e(B, H)
    ws = torch.empty(C().workspace_bytes("gru_backward", name, T, B, 0, H, 1), dtype=torch.uint8)
    C().gru_backward(p["w_hh"], out["saved"], p["h0"], out["y"], p["dy"], p["dh_n"], dgx, dgh, dh0, ws, 1)
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
    return dict(gates_x=e(T, B, 4 * H), w_hh=e(4 * H, H), h0=e(B, H), c0=e(B, H), y=e(T, B, H), h_n=e(B, H),
                c_n=e(B, H), saved_gates=e(T, B, 4 * H), saved_c=e(T, B, H),
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
        EMU.lstm_backward(e(4 * H, H), e(T, B, 4 * H), e(T, B, H), e(B, H), e(T, B, H), e(B, H), e(B, H),
                          e(T, B, 4 * H), dh0, dh0, torch.zeros(64, dtype=torch.uint8), "auto")
    with pytest.raises(ValueError, match="shape"):
        EMU.gru_backward(e(3 * H, H), e(T, B, 3 * H), e(B, H), e(T, B, H), e(T, B, H), e(B, H), e(T, B, 3 * H),
                         e(T, B, 3 * H), e(B, H), torch.zeros(64, dtype=torch.uint8), "auto")
    with pytest.raises(ValueError, match="b_hh"):
        EMU.gru_forward(e(T, B, 3 * H), e(3 * H, H), e(4 * H), e(B, H), e(T, B, H), e(B, H), None,
                        torch.zeros(64, dtype=torch.uint8), "auto")


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
