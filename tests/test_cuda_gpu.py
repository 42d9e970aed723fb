"""The CUDA kernels on a GPU, through fastgates/_cuda.py (the entry points the custom ops will
call): forward and backward against the CPU kernels, composed the way _cuda.py's docstring
tells the ops to, and gradcheck in float64. Skipped without a GPU or without the CUDA build."""

from __future__ import annotations

import pytest
import torch

import fastgates
from fastgates import _cuda

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and fastgates.build_info()["cuda"]),
                                reason="needs a CUDA device and fastgates built with nvcc")

DEVICE = "cuda"
STRATEGIES = ("auto", "per_step", "persistent")
SHAPES = [(1, 1, 2, 3), (5, 3, 4, 13), (7, 9, 16, 70)]


def previous_h(h0, y):
    return torch.cat([h0[None], y[:-1]])


def layer(G, T, B, I, H, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = 1 / H**0.5

    def rnd(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype).to(device)

    return {"x": rnd(T, B, I), "w_ih": rnd(G * H, I, scale=k), "w_hh": rnd(G * H, H, scale=k),
            "b_ih": rnd(G * H, scale=k), "b_hh": rnd(G * H, scale=k), "h0": rnd(B, H), "c0": rnd(B, H)}


class CudaLstm(torch.autograd.Function):
    """An LSTM layer on the CUDA kernels, composed as the ops will be (see _cuda.py)."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0, c0, strategy):
        T, B, I = x.shape
        H = w_hh.shape[1]
        gates_x = torch.addmm(b_ih + b_hh, x.reshape(T * B, I), w_ih.t()).view(T, B, 4 * H)
        y, h_n, c_n = x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(B, H)
        saved_gates, saved_c = x.new_empty(T, B, 4 * H), x.new_empty(T, B, H)
        _cuda.lstm_forward(gates_x, w_hh, h0, c0, y, h_n, c_n, saved_gates, saved_c, strategy=strategy)
        ctx.save_for_backward(x, w_ih, w_hh, h0, c0, y, saved_gates, saved_c)
        ctx.strategy = strategy
        return y, h_n, c_n

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        x, w_ih, w_hh, h0, c0, y, saved_gates, saved_c = ctx.saved_tensors
        T, B, I = x.shape
        H = w_hh.shape[1]
        dgates, dh0, dc0 = x.new_empty(T, B, 4 * H), x.new_empty(B, H), x.new_empty(B, H)
        _cuda.lstm_backward(w_hh, saved_gates, saved_c, c0, dy.contiguous(), dh_n.contiguous(), dc_n.contiguous(),
                            dgates, dh0, dc0, strategy=ctx.strategy)
        g = dgates.view(T * B, 4 * H)
        db = g.sum(0)
        return ((g @ w_ih).view(T, B, I), g.t() @ x.reshape(T * B, I),
                g.t() @ previous_h(h0, y).reshape(T * B, H), db, db, dh0, dc0, None)


class CudaGru(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0, strategy):
        T, B, I = x.shape
        H = w_hh.shape[1]
        gates_x = torch.addmm(b_ih, x.reshape(T * B, I), w_ih.t()).view(T, B, 3 * H)
        y, h_n, saved = x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T, B, 4 * H)
        _cuda.gru_forward(gates_x, w_hh, b_hh, h0, y, h_n, saved, strategy=strategy)
        ctx.save_for_backward(x, w_ih, w_hh, h0, y, saved)
        ctx.strategy = strategy
        return y, h_n

    @staticmethod
    def backward(ctx, dy, dh_n):
        x, w_ih, w_hh, h0, y, saved = ctx.saved_tensors
        T, B, I = x.shape
        H = w_hh.shape[1]
        dgx, dgh, dh0 = x.new_empty(T, B, 3 * H), x.new_empty(T, B, 3 * H), x.new_empty(B, H)
        _cuda.gru_backward(w_hh, saved, h0, y, dy.contiguous(), dh_n.contiguous(), dgx, dgh, dh0,
                           strategy=ctx.strategy)
        gx, gh = dgx.view(T * B, 3 * H), dgh.view(T * B, 3 * H)
        return ((gx @ w_ih).view(T, B, I), gx.t() @ x.reshape(T * B, I),
                gh.t() @ previous_h(h0, y).reshape(T * B, H), gx.sum(0), gh.sum(0), dh0, None)


def torch_nn(mode, p):
    """The same layer as torch.nn on the CPU in float64, with its gradients."""
    H = p["w_hh"].shape[1]
    module = getattr(torch.nn, mode)(p["x"].shape[2], H, dtype=torch.float64)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            getattr(module, f"{name.replace('w_', 'weight_').replace('b_', 'bias_')}_l0").copy_(p[name].cpu())
    x = p["x"].detach().cpu().double().requires_grad_()
    h0 = p["h0"].detach().cpu().double().requires_grad_()
    c0 = p["c0"].detach().cpu().double().requires_grad_()
    return module, x, h0, c0


def skip_if_persistent_cannot_run(kernel, p, strategy):
    if strategy != "persistent":
        return
    B, H = p["h0"].shape
    try:
        _cuda.launch_config(kernel, p["x"].dtype, B, H, torch.cuda.current_device(), "persistent")
    except ValueError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
def test_matches_torch_nn(shape, mode, dtype, strategy):
    G = 4 if mode == "LSTM" else 3
    p = layer(G, *shape, dtype, DEVICE)
    skip_if_persistent_cannot_run(f"{mode.lower()}_forward", p, strategy)
    params = {k: v.clone().requires_grad_() for k, v in p.items()}
    if mode == "LSTM":
        y, h_n, c_n = CudaLstm.apply(params["x"], params["w_ih"], params["w_hh"], params["b_ih"], params["b_hh"],
                                     params["h0"], params["c0"], strategy)
        outputs = (y, h_n, c_n)
    else:
        y, h_n = CudaGru.apply(params["x"], params["w_ih"], params["w_hh"], params["b_ih"], params["b_hh"],
                               params["h0"], strategy)
        outputs = (y, h_n)
    module, x, h0, c0 = torch_nn(mode, p)
    if mode == "LSTM":
        ry, (rh, rc) = module(x, (h0[None], c0[None]))
        expected = (ry, rh[0], rc[0])
    else:
        ry, rh = module(x, h0[None])
        expected = (ry, rh[0])
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for ours, ref in zip(outputs, expected):
        torch.testing.assert_close(ours.detach().cpu().double(), ref.detach(), **tol)
    weights = [torch.randn(o.shape, dtype=torch.float64) for o in expected]
    sum((o * w.to(o.device, o.dtype)).sum() for o, w in zip(outputs, weights)).backward()
    sum((o * w).sum() for o, w in zip(expected, weights)).backward()
    grad_tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-3, "atol": 1e-4}
    torch.testing.assert_close(params["x"].grad.cpu().double(), x.grad, **grad_tol)
    torch.testing.assert_close(params["h0"].grad.cpu().double(), h0.grad, **grad_tol)
    if mode == "LSTM":
        torch.testing.assert_close(params["c0"].grad.cpu().double(), c0.grad, **grad_tol)
    torch.testing.assert_close(params["w_hh"].grad.cpu().double(), module.weight_hh_l0.grad, **grad_tol)
    torch.testing.assert_close(params["w_ih"].grad.cpu().double(), module.weight_ih_l0.grad, **grad_tol)
    torch.testing.assert_close(params["b_hh"].grad.cpu().double(), module.bias_hh_l0.grad, **grad_tol)


@pytest.mark.parametrize("strategy", ["per_step", "persistent"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_gradcheck_float64(mode, strategy):
    G = 4 if mode == "LSTM" else 3
    p = layer(G, 3, 2, 3, 5, torch.float64, DEVICE, seed=7)
    skip_if_persistent_cannot_run(f"{mode.lower()}_forward", p, strategy)
    inputs = [v.clone().requires_grad_() for k, v in p.items() if mode == "LSTM" or k != "c0"]
    function = CudaLstm if mode == "LSTM" else CudaGru
    assert torch.autograd.gradcheck(lambda *a: function.apply(*a, strategy), inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_close_to_float64(dtype):
    p = layer(4, 4, 3, 8, 32, torch.float64, DEVICE, seed=3)
    ref = CudaLstm.apply(*p.values(), "auto")
    half = CudaLstm.apply(*(v.to(dtype) for v in p.values()), "auto")
    tol = 1e-2 if dtype == torch.float16 else 6e-2
    for ours, expected in zip(half, ref):
        torch.testing.assert_close(ours.double(), expected, rtol=tol, atol=tol)


def test_runs_on_the_current_stream():
    p = layer(3, 4, 2, 3, 8, torch.float32, DEVICE, seed=4)
    expected = CudaGru.apply(*(p[k] for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0")), "auto")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        result = CudaGru.apply(*(p[k] for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0")), "auto")
    torch.cuda.current_stream().wait_stream(stream)
    for a, b in zip(result, expected):
        assert torch.equal(a, b)


def test_cpu_tensors_are_rejected():
    p = layer(3, 2, 2, 3, 4, torch.float32, DEVICE)
    T, B, H = 2, 2, 4
    y = torch.empty(T, B, H)  # on the CPU
    with pytest.raises(ValueError, match="device"):
        _cuda.gru_forward(torch.zeros(T, B, 3 * H, device=DEVICE), p["w_hh"], None, p["h0"], y,
                          torch.empty(B, H, device=DEVICE))


def test_device_properties():
    from fastgates._backend import C

    props = C().cuda.device_properties(0)
    assert props["sm_count"] == torch.cuda.get_device_properties(0).multi_processor_count
    assert props["shared_bytes_per_block"] >= 48 * 1024


def cpu_lstm(p, batch_sizes, reverse):
    """The CPU kernels (fastgates._C) on the same packed problem: outputs and gradients."""
    from fastgates._backend import C

    N, I = p["x"].shape
    B, H = p["h0"].shape
    T = len(batch_sizes)
    e = lambda *s: torch.empty(*s, dtype=torch.float64)  # noqa: E731
    out = {"y": e(N, H), "h_n": e(B, H), "c_n": e(B, H), "saved_gates": e(N, 4 * H), "saved_c": e(N, H)}
    ws = torch.empty(C().workspace_bytes("lstm_forward", "float64", T, B, I, H, 1), dtype=torch.uint8)
    C().lstm_forward(p["x"], p["w_ih"], p["b"], p["w_hh"], None, None, p["h0"], p["c0"], batch_sizes, reverse,
                     e(N, 4 * H), out["y"], out["h_n"], out["c_n"], out["saved_gates"], out["saved_c"], None, ws, 1)
    out.update(dgates=e(N, 4 * H), dh0=e(B, H), dc0=e(B, H))
    ws = torch.empty(C().workspace_bytes("lstm_backward", "float64", T, B, 0, H, 1), dtype=torch.uint8)
    C().lstm_backward(p["w_hh"], None, out["saved_gates"], out["saved_c"], p["c0"], batch_sizes, reverse, p["dy"],
                      p["dh_n"], p["dc_n"], out["dgates"], None, out["dh0"], out["dc0"], ws, 1)
    return out


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("reverse", [False, True])
def test_packed_and_reverse_match_the_cpu_kernels(reverse, strategy):
    lengths = [6, 6, 4, 1]
    batch_sizes = torch.tensor([sum(n > t for n in lengths) for t in range(lengths[0])])
    N, B, I, H = sum(lengths), len(lengths), 3, 9
    g = torch.Generator().manual_seed(8)
    shapes = {"x": (N, I), "w_ih": (4 * H, I), "w_hh": (4 * H, H), "b": (4 * H,), "h0": (B, H), "c0": (B, H),
              "dy": (N, H), "dh_n": (B, H), "dc_n": (B, H)}
    p = {k: (torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1) / 3 for k, s in shapes.items()}
    if strategy == "persistent":
        skip_if_persistent_cannot_run("lstm_forward", {"x": p["x"], "h0": p["h0"]}, strategy)
    expected = cpu_lstm(p, batch_sizes, reverse)
    d = {k: v.to(DEVICE) for k, v in p.items()}
    e = lambda *s: torch.empty(*s, dtype=torch.float64, device=DEVICE)  # noqa: E731
    out = {"y": e(N, H), "h_n": e(B, H), "c_n": e(B, H), "saved_gates": e(N, 4 * H), "saved_c": e(N, H)}
    gates_x = torch.addmm(d["b"], d["x"], d["w_ih"].t())
    _cuda.lstm_forward(gates_x, d["w_hh"], d["h0"], d["c0"], out["y"], out["h_n"], out["c_n"], out["saved_gates"],
                       out["saved_c"], strategy=strategy, batch_sizes=batch_sizes, reverse=reverse)
    out.update(dgates=e(N, 4 * H), dh0=e(B, H), dc0=e(B, H))
    _cuda.lstm_backward(d["w_hh"], out["saved_gates"], out["saved_c"], d["c0"], d["dy"], d["dh_n"], d["dc_n"],
                        out["dgates"], out["dh0"], out["dc0"], strategy=strategy, batch_sizes=batch_sizes,
                        reverse=reverse)
    for name, value in out.items():
        torch.testing.assert_close(value.cpu(), expected[name], rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")
