"""Tests for the pure-NumPy float64 reference (python/fastgates/reference.py).

The reference is loaded standalone from its file path so these tests do not
depend on the compiled fastgates package being built.  It is checked against
torch.nn.LSTM / torch.nn.GRU (forward and autograd) in float64, and
independently against central finite differences.
"""

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

REFERENCE_PATH = Path(__file__).parent.parent / "python/fastgates/reference.py"


def load_reference(name="fastgates_reference_standalone"):
    """Import reference.py from its path, without the fastgates package."""
    spec = importlib.util.spec_from_file_location(name, REFERENCE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = load_reference()

torch = pytest.importorskip("torch")

RTOL = 1e-10
ATOL = 1e-12

LSTM_KEYS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
GRU_KEYS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0")

# (T, B, I, H)
SHAPES = [
    pytest.param(1, 1, 1, 1, id="T1-B1-I1-H1"),
    pytest.param(1, 3, 4, 5, id="T1"),
    pytest.param(5, 1, 3, 4, id="B1"),
    pytest.param(4, 3, 2, 1, id="H1"),
    pytest.param(6, 5, 17, 31, id="odd-I17-H31"),
    pytest.param(200, 3, 5, 7, id="long-T200"),
]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def make_inputs(rng, T, B, I, H, n_gates, scale=1.0):
    """Random layer inputs with torch-like weight init (U(-1/sqrt(H), ..))."""
    k = 1.0 / np.sqrt(H)
    G = n_gates
    return {
        "x": rng.standard_normal((T, B, I)),
        "w_ih": scale * rng.uniform(-k, k, (G * H, I)),
        "w_hh": scale * rng.uniform(-k, k, (G * H, H)),
        "b_ih": scale * rng.uniform(-k, k, (G * H,)),
        "b_hh": scale * rng.uniform(-k, k, (G * H,)),
        "h0": rng.standard_normal((B, H)),
        "c0": rng.standard_normal((B, H)),
    }


def torch_rnn(kind, p, dy=None, dh_n=None, dc_n=None):
    """Run torch.nn.LSTM/GRU in float64; return outputs and input gradients."""
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    module = cls(I, H, num_layers=1, bias=True, dtype=torch.float64)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            getattr(module, name.replace("w_", "weight_").replace("b_", "bias_") + "_l0").copy_(
                torch.from_numpy(p[name])
            )
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    h0 = torch.from_numpy(p["h0"]).reshape(1, B, H).requires_grad_(True)
    if kind == "lstm":
        c0 = torch.from_numpy(p["c0"]).reshape(1, B, H).requires_grad_(True)
        y, (h_n, c_n) = module(x, (h0, c0))
    else:
        y, h_n = module(x, h0)
    out = {"y": y.detach().numpy(), "h_n": h_n[0].detach().numpy()}
    if kind == "lstm":
        out["c_n"] = c_n[0].detach().numpy()
    if dy is None:
        return out, None

    loss = (y * torch.from_numpy(dy)).sum() + (h_n[0] * torch.from_numpy(dh_n)).sum()
    if kind == "lstm":
        loss = loss + (c_n[0] * torch.from_numpy(dc_n)).sum()
    loss.backward()
    grads = {
        "x": x.grad.numpy(),
        "w_ih": module.weight_ih_l0.grad.numpy(),
        "w_hh": module.weight_hh_l0.grad.numpy(),
        "b_ih": module.bias_ih_l0.grad.numpy(),
        "b_hh": module.bias_hh_l0.grad.numpy(),
        "h0": h0.grad[0].numpy(),
    }
    if kind == "lstm":
        grads["c0"] = c0.grad[0].numpy()
    return out, grads


def lstm_args(p):
    return (p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"])


def gru_args(p):
    return (p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"])


def assert_close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


# ---------------------------------------------------------------------------
# Standalone import / no torch
# ---------------------------------------------------------------------------


def test_standalone_import_does_not_use_torch():
    module = load_reference("fastgates_reference_standalone_check")
    assert ("torch" in vars(module)) is False
    for name in ("lstm", "lstm_grad", "gru", "gru_grad"):
        assert callable(getattr(module, name))


def test_works_with_torch_unavailable():
    """Load and run everything in a subprocess where `import torch` fails."""
    code = f"""
import sys
sys.modules["torch"] = None  # makes any `import torch` raise ImportError
import importlib.util
import numpy as np
spec = importlib.util.spec_from_file_location("r", {str(REFERENCE_PATH)!r})
r = importlib.util.module_from_spec(spec)
spec.loader.exec_module(r)
rng = np.random.default_rng(0)
x = rng.standard_normal((3, 2, 4))
h = np.zeros((2, 5))
y, (hn, cn) = r.lstm(x, np.ones((20, 4)), np.ones((20, 5)), np.zeros(20), np.zeros(20), h, h)
g = r.lstm_grad(x, np.ones((20, 4)), np.ones((20, 5)), np.zeros(20), np.zeros(20), h, h, y, None, None)
y, hn = r.gru(x, np.ones((15, 4)), np.ones((15, 5)), np.zeros(15), np.zeros(15), h)
g = r.gru_grad(x, np.ones((15, 4)), np.ones((15, 5)), np.zeros(15), np.zeros(15), h, y, None)
assert "torch" not in vars(r)
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---------------------------------------------------------------------------
# Forward vs torch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_lstm_forward_matches_torch(T, B, I, H):
    p = make_inputs(np.random.default_rng(1), T, B, I, H, n_gates=4)
    y, (h_n, c_n) = ref.lstm(*lstm_args(p))
    expected, _ = torch_rnn("lstm", p)
    assert y.shape == (T, B, H) and h_n.shape == (B, H) and c_n.shape == (B, H)
    assert y.dtype == h_n.dtype == c_n.dtype == np.float64
    assert_close(y, expected["y"], "y")
    assert_close(h_n, expected["h_n"], "h_n")
    assert_close(c_n, expected["c_n"], "c_n")
    np.testing.assert_array_equal(y[-1], h_n)


@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_gru_forward_matches_torch(T, B, I, H):
    p = make_inputs(np.random.default_rng(2), T, B, I, H, n_gates=3)
    y, h_n = ref.gru(*gru_args(p))
    expected, _ = torch_rnn("gru", p)
    assert y.shape == (T, B, H) and h_n.shape == (B, H)
    assert y.dtype == h_n.dtype == np.float64
    assert_close(y, expected["y"], "y")
    assert_close(h_n, expected["h_n"], "h_n")
    np.testing.assert_array_equal(y[-1], h_n)


# ---------------------------------------------------------------------------
# Gradients vs torch autograd
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_lstm_grad_matches_torch_autograd(T, B, I, H):
    rng = np.random.default_rng(3)
    p = make_inputs(rng, T, B, I, H, n_gates=4)
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    dc_n = rng.standard_normal((B, H))
    grads = ref.lstm_grad(*lstm_args(p), dy, dh_n, dc_n)
    _, expected = torch_rnn("lstm", p, dy, dh_n, dc_n)
    assert set(grads) == set(LSTM_KEYS)
    for key in LSTM_KEYS:
        assert grads[key].shape == p[key].shape, key
        assert grads[key].dtype == np.float64, key
        assert_close(grads[key], expected[key], f"d{key}")


@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_gru_grad_matches_torch_autograd(T, B, I, H):
    rng = np.random.default_rng(4)
    p = make_inputs(rng, T, B, I, H, n_gates=3)
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    grads = ref.gru_grad(*gru_args(p), dy, dh_n)
    _, expected = torch_rnn("gru", p, dy, dh_n)
    assert set(grads) == set(GRU_KEYS)
    for key in GRU_KEYS:
        assert grads[key].shape == p[key].shape, key
        assert grads[key].dtype == np.float64, key
        assert_close(grads[key], expected[key], f"d{key}")


# ---------------------------------------------------------------------------
# Independent finite-difference check (no torch involved)
# ---------------------------------------------------------------------------


def _lstm_loss(p, dy, dh_n, dc_n):
    y, (h_n, c_n) = ref.lstm(*lstm_args(p))
    return np.sum(dy * y) + np.sum(dh_n * h_n) + np.sum(dc_n * c_n)


def _gru_loss(p, dy, dh_n):
    y, h_n = ref.gru(*gru_args(p))
    return np.sum(dy * y) + np.sum(dh_n * h_n)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_grad_matches_central_finite_differences(kind):
    rng = np.random.default_rng(5)
    T, B, I, H = 4, 2, 3, 5
    n_gates = 4 if kind == "lstm" else 3
    p = make_inputs(rng, T, B, I, H, n_gates=n_gates)
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    if kind == "lstm":
        dc_n = rng.standard_normal((B, H))
        grads = ref.lstm_grad(*lstm_args(p), dy, dh_n, dc_n)
        loss = lambda q: _lstm_loss(q, dy, dh_n, dc_n)  # noqa: E731
        keys = LSTM_KEYS
    else:
        grads = ref.gru_grad(*gru_args(p), dy, dh_n)
        loss = lambda q: _gru_loss(q, dy, dh_n)  # noqa: E731
        keys = GRU_KEYS

    eps = 1e-6
    for key in keys:
        # A few random entries of every gradient, plus the first and last.
        flat_size = p[key].size
        picks = {0, flat_size - 1, *rng.choice(flat_size, size=3).tolist()}
        for flat in sorted(picks):
            idx = np.unravel_index(flat, p[key].shape)
            plus = {k: v.copy() for k, v in p.items()}
            minus = {k: v.copy() for k, v in p.items()}
            plus[key][idx] += eps
            minus[key][idx] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            np.testing.assert_allclose(
                grads[key][idx], numeric, rtol=1e-6, atol=1e-8,
                err_msg=f"{kind} d{key}{idx}",
            )


# ---------------------------------------------------------------------------
# None upstream gradients
# ---------------------------------------------------------------------------


def test_lstm_grad_none_means_zeros():
    rng = np.random.default_rng(6)
    T, B, I, H = 3, 2, 4, 5
    p = make_inputs(rng, T, B, I, H, n_gates=4)
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    dc_n = rng.standard_normal((B, H))
    zeros_y, zeros_s = np.zeros((T, B, H)), np.zeros((B, H))
    cases = [
        ((None, dh_n, dc_n), (zeros_y, dh_n, dc_n)),
        ((dy, None, dc_n), (dy, zeros_s, dc_n)),
        ((dy, dh_n, None), (dy, dh_n, zeros_s)),
        ((dy, None, None), (dy, zeros_s, zeros_s)),
    ]
    for with_none, explicit in cases:
        got = ref.lstm_grad(*lstm_args(p), *with_none)
        want = ref.lstm_grad(*lstm_args(p), *explicit)
        for key in LSTM_KEYS:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)

    # Only dh_n given: must match torch too (loss without the y / c_n terms).
    got = ref.lstm_grad(*lstm_args(p), None, dh_n, None)
    _, expected = torch_rnn("lstm", p, zeros_y, dh_n, zeros_s)
    for key in LSTM_KEYS:
        assert_close(got[key], expected[key], f"d{key}")

    # All None: every gradient is exactly zero.
    got = ref.lstm_grad(*lstm_args(p), None, None, None)
    for key in LSTM_KEYS:
        assert got[key].shape == p[key].shape
        assert not np.any(got[key]), key


def test_gru_grad_none_means_zeros():
    rng = np.random.default_rng(7)
    T, B, I, H = 3, 2, 4, 5
    p = make_inputs(rng, T, B, I, H, n_gates=3)
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    zeros_y, zeros_s = np.zeros((T, B, H)), np.zeros((B, H))
    for with_none, explicit in [
        ((None, dh_n), (zeros_y, dh_n)),
        ((dy, None), (dy, zeros_s)),
    ]:
        got = ref.gru_grad(*gru_args(p), *with_none)
        want = ref.gru_grad(*gru_args(p), *explicit)
        for key in GRU_KEYS:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)

    got = ref.gru_grad(*gru_args(p), dy, None)
    _, expected = torch_rnn("gru", p, dy, zeros_s)
    for key in GRU_KEYS:
        assert_close(got[key], expected[key], f"d{key}")

    got = ref.gru_grad(*gru_args(p), None, None)
    for key in GRU_KEYS:
        assert got[key].shape == p[key].shape
        assert not np.any(got[key]), key


# ---------------------------------------------------------------------------
# Numerical robustness and input conversion
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_large_preactivations_no_overflow_warnings(kind):
    rng = np.random.default_rng(8)
    T, B, I, H = 5, 3, 4, 6
    n_gates = 4 if kind == "lstm" else 3
    p = make_inputs(rng, T, B, I, H, n_gates=n_gates, scale=1e4)
    p["x"] *= 1e3
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        if kind == "lstm":
            y, (h_n, c_n) = ref.lstm(*lstm_args(p))
            grads = ref.lstm_grad(*lstm_args(p), dy, dh_n, dh_n)
            outputs = [y, h_n, c_n]
        else:
            y, h_n = ref.gru(*gru_args(p))
            grads = ref.gru_grad(*gru_args(p), dy, dh_n)
            outputs = [y, h_n]
    for arr in outputs + list(grads.values()):
        assert np.all(np.isfinite(arr))
    # LSTM: |h| <= 1.  GRU: h is a convex combination of n in [-1, 1] and h0.
    bound = 1.0 if kind == "lstm" else max(1.0, np.max(np.abs(p["h0"])))
    assert np.all(np.abs(y) <= bound)


def test_accepts_lists_and_float32_and_returns_float64():
    rng = np.random.default_rng(9)
    p = make_inputs(rng, 2, 2, 3, 2, n_gates=3)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    y, h_n = ref.gru(*(v.tolist() for v in gru_args(p32)))
    assert y.dtype == np.float64 and h_n.dtype == np.float64
    y64, _ = ref.gru(*(v.astype(np.float64) for v in gru_args(p32)))
    np.testing.assert_array_equal(y, y64)


def test_bias_zeros_equals_torch_bias_false():
    rng = np.random.default_rng(10)
    T, B, I, H = 4, 2, 3, 5
    p = make_inputs(rng, T, B, I, H, n_gates=4)
    p["b_ih"][:] = 0.0
    p["b_hh"][:] = 0.0
    module = torch.nn.LSTM(I, H, bias=False, dtype=torch.float64)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(p["w_ih"]))
        module.weight_hh_l0.copy_(torch.from_numpy(p["w_hh"]))
        h0 = torch.from_numpy(p["h0"])[None]
        c0 = torch.from_numpy(p["c0"])[None]
        y_t, _ = module(torch.from_numpy(p["x"]), (h0, c0))
    y, _ = ref.lstm(*lstm_args(p))
    assert_close(y, y_t.numpy(), "y")


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _bad_shapes(n_gates, T=3, B=2, I=4, H=5):
    G = n_gates
    return [
        ("x", (T, B)),
        ("x", (T, B, I + 1)),  # inconsistent with w_ih -> reported as w_ih
        ("w_ih", (G * H, I + 1)),
        ("w_ih", (G * H + 1, I)),
        ("w_hh", (G * H, H + 1)),
        ("w_hh", (G * H,)),
        ("b_ih", (G * H + 1,)),
        ("b_ih", (1, G * H)),
        ("b_hh", (H,)),
        ("h0", (1, B, H)),
        ("h0", (B, H + 1)),
        ("c0", (B + 1, H)),
        ("dy", (T - 1, B, H)),
        ("dh_n", (B, H, 1)),
        ("dc_n", (H,)),
    ]


def _call(kind, args):
    if kind == "lstm":
        return ref.lstm_grad(
            args["x"], args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"],
            args["h0"], args["c0"], args["dy"], args["dh_n"], args["dc_n"],
        )
    return ref.gru_grad(
        args["x"], args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"],
        args["h0"], args["dy"], args["dh_n"],
    )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bad_shapes_raise_value_error_naming_argument(kind):
    T, B, I, H = 3, 2, 4, 5
    n_gates = 4 if kind == "lstm" else 3
    base = make_inputs(np.random.default_rng(11), T, B, I, H, n_gates=n_gates)
    base["dy"] = np.zeros((T, B, H))
    base["dh_n"] = np.zeros((B, H))
    base["dc_n"] = np.zeros((B, H))
    _call(kind, base)  # sanity: the unmodified arguments are accepted

    for name, shape in _bad_shapes(n_gates, T, B, I, H):
        if kind == "gru" and name in ("c0", "dc_n"):
            continue
        args = dict(base)
        args[name] = np.zeros(shape)
        # Changing x's I is only detectable against w_ih.
        blamed = "w_ih" if (name == "x" and len(shape) == 3) else name
        with pytest.raises(ValueError, match=rf"\b{blamed}\b") as info:
            _call(kind, args)
        if blamed == name:  # the message also reports the offending shape
            assert str(shape) in str(info.value)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_forward_bad_shapes_raise(kind):
    T, B, I, H = 3, 2, 4, 5
    n_gates = 4 if kind == "lstm" else 3
    p = make_inputs(np.random.default_rng(12), T, B, I, H, n_gates=n_gates)
    fwd = ref.lstm if kind == "lstm" else ref.gru
    args = lstm_args if kind == "lstm" else gru_args
    for name in ("w_ih", "w_hh", "b_ih", "b_hh", "h0") + (("c0",) if kind == "lstm" else ()):
        q = dict(p)
        q[name] = np.zeros(p[name].shape[:-1] + (p[name].shape[-1] + 1,))
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            fwd(*args(q))
    q = dict(p)
    q["h0"] = None
    with pytest.raises(ValueError, match=r"\bh0\b"):
        fwd(*args(q))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(
    "dims,blamed",
    [
        ((0, 2, 3, 4), "x"),  # T = 0
        ((3, 0, 3, 4), "x"),  # B = 0
        ((3, 2, 0, 4), "x"),  # I = 0
        ((3, 2, 3, 0), "w_hh"),  # H = 0
    ],
    ids=["T0", "B0", "I0", "H0"],
)
def test_zero_sizes_rejected(kind, dims, blamed):
    T, B, I, H = dims
    G = 4 if kind == "lstm" else 3
    x = np.zeros((T, B, I))
    w_ih, w_hh = np.zeros((G * H, I)), np.zeros((G * H, H))
    b = np.zeros(G * H)
    h = np.zeros((B, H))
    with pytest.raises(ValueError, match=rf"\b{blamed}\b"):
        if kind == "lstm":
            ref.lstm(x, w_ih, w_hh, b, b, h, h)
        else:
            ref.gru(x, w_ih, w_hh, b, b, h)


def test_package_reference_imports_without_torch(tmp_path):
    """`import fastgates.reference` (through the package) works where torch cannot be imported,
    and the torch-backed names say what is missing."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # makes `import torch` raise ModuleNotFoundError\n"
        "import numpy as np\n"
        "import fastgates.reference as ref\n"
        "x = np.zeros((2, 1, 3)); w_ih = np.zeros((8, 3)); w_hh = np.zeros((8, 2)); b = np.zeros(8)\n"
        "y, (h, c) = ref.lstm(x, w_ih, w_hh, b, b, np.zeros((1, 2)), np.zeros((1, 2)))\n"
        "assert y.shape == (2, 1, 2)\n"
        "import fastgates\n"
        "try:\n"
        "    fastgates.LSTM\n"
        "except ImportError as e:\n"
        "    assert 'needs PyTorch' in str(e)\n"
        "else:\n"
        "    raise AssertionError('fastgates.LSTM without torch should raise ImportError')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
