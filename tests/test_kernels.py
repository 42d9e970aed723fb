"""The compiled kernels (fastgates._C) called directly, against the NumPy reference.

Every instruction-set build this processor can run is tested (the dispatcher normally picks
only the widest), at 1 and 2 threads, in float64 (tight) and float32. Also: bit-identical
results across runs and thread counts, and the binding's own argument checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastgates
from fastgates import _C
from fastgates import reference as ref
from rnn_helpers import assert_shared_gradient_rows_act_as_dense, outputs_flat

pytestmark = pytest.mark.usefixtures("split_small_shapes_across_threads")  # conftest.py

# (T, B, I, H). (1, 1, 37, 67), (2, 1, 16, 33) and (1, 2, 9, 20) have at most 4 rows in all, which
# the forward multiplies straight from the weights' rows instead of packed panels (recurrence.h,
# direct_products), here with partial vectors along I and H; at B = 1 the recurrent products
# read W_hh's rows whenever H spans 8 vectors (direct_recurrent_products): (3, 1, 5, 16) on the
# generic build in float64, (6, 1, 13, 130) on every build. One step of up to 32 rows reads the
# weights' rows too when I and H span 8 vectors, by tiles of 4, 2 and 1 rows: (1, 30, 140, 131)
# with AVX-512 in float32 and every build in float64, (1, 7, 70, 67) with AVX2 in float32 and
# AVX-512 in float64. In one step of at most one super-tile of rows (32 with AVX-512, 24 with
# AVX2) the backward reads W_hh in place for the groups of its columns that are whole and packs
# a partial last one (recurrent_product.h, columns_in_place): (1, 1, 37, 67), (1, 30, 10, 72)
# and (1, 30, 140, 131) mix the two (B = 30 packed with AVX2). One step that packs its panels
# packs each block's just before its use, into one slot per thread (recurrence.h,
# pack_each_block): (1, 30, 10, 72) with 2-3 blocks per thread, (1, 40, 9, 50) with rows in two
# super-tiles that share each packed panel. The backward of such a step packs each group of
# W_hh's columns just before its pass, into one slot per thread (pack_each_group): (1, 40, 5, 300)
# with several groups per thread and a partial last one.
SHAPES = [(1, 1, 1, 1), (5, 3, 17, 31), (7, 9, 8, 40), (3, 1, 5, 16), (4, 33, 6, 17), (1, 1, 37, 67),
          (2, 1, 16, 33), (1, 2, 9, 20), (6, 1, 13, 130), (1, 30, 10, 72), (1, 30, 140, 131), (1, 7, 70, 67),
          (1, 40, 9, 50), (1, 40, 5, 300)]


def _randn(gen, *shape, dtype, scale=1.0):
    return torch.randn(*shape, dtype=dtype, generator=gen) * scale


def _np(t):
    return t.detach().double().numpy()


def _workspace(kernel, dtype, steps, batch, inputs, hidden, threads):
    name = {torch.float32: "float32", torch.float64: "float64"}[dtype]
    return torch.empty(_C.workspace_bytes(kernel, name, steps, batch, inputs, hidden, threads), dtype=torch.uint8)


def _problem(T, B, I, H, dtype, gates, states, seed=0):
    """Random inputs of one layer: x, weights, biases, initial states ("h0", "c0", ...) and
    the output gradients ("dy", "dh_n", ...)."""
    g = torch.Generator().manual_seed(seed)
    p = dict(
        x=_randn(g, T, B, I, dtype=dtype),
        w_ih=_randn(g, gates * H, I, dtype=dtype, scale=H**-0.5),
        w_hh=_randn(g, gates * H, H, dtype=dtype, scale=H**-0.5),
        b_ih=_randn(g, gates * H, dtype=dtype),
        b_hh=_randn(g, gates * H, dtype=dtype),
    )
    for state in states:
        p[f"{state}0"] = _randn(g, B, H, dtype=dtype)
    p["dy"] = _randn(g, T, B, H, dtype=dtype)
    for state in states:
        p[f"d{state}_n"] = _randn(g, B, H, dtype=dtype)
    return p


def _lstm_problem(T, B, I, H, dtype, seed=0):
    return _problem(T, B, I, H, dtype, 4, ("h", "c"), seed)


def _run_lstm(p, threads, project_into_saved=False):
    """project_into_saved: gates_x is saved_gates, whose activations overwrite it (kernels.h)."""
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    dt = p["x"].dtype
    out = dict(
        y=torch.empty(T, B, H, dtype=dt),
        h_n=torch.empty(B, H, dtype=dt),
        c_n=torch.empty(B, H, dtype=dt),
        saved_gates=torch.empty(T, B, 4 * H, dtype=dt),
        saved_c=torch.empty(T, B, H, dtype=dt),
        dgates=torch.empty(T, B, 4 * H, dtype=dt),
        dh0=torch.empty(B, H, dtype=dt),
        dc0=torch.empty(B, H, dtype=dt),
        db=torch.empty(4 * H, dtype=dt),
    )
    out["gates_x"] = out["saved_gates"] if project_into_saved else torch.empty(T, B, 4 * H, dtype=dt)
    _C.lstm_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], None, p["h0"], p["c0"], None, False,
                    out["gates_x"], out["y"], out["h_n"], out["c_n"], out["saved_gates"], out["saved_c"], None,
                    _workspace("lstm_forward", dt, T, B, I, H, threads), threads)
    _C.lstm_backward(p["w_hh"], None, out["saved_gates"], out["saved_c"], p["c0"], None, False, p["dy"],
                     p["dh_n"], p["dc_n"], out["dgates"], None, out["dh0"], out["dc0"],
                     _workspace("lstm_backward", dt, T, B, 0, H, threads), threads, db=out["db"])
    return out


def _gru_problem(T, B, I, H, dtype, seed=0):
    return _problem(T, B, I, H, dtype, 3, ("h",), seed)


def _run_gru(p, threads, project_into_saved=False):
    """project_into_saved: gates_x is None, so the forward projects into saved (kernels.h)."""
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    dt = p["x"].dtype
    out = dict(
        y=torch.empty(T, B, H, dtype=dt),
        h_n=torch.empty(B, H, dtype=dt),
        saved=torch.empty(T, B, 4 * H, dtype=dt),
        dgates_x=torch.empty(T, B, 3 * H, dtype=dt),
        dgates_h=torch.empty(T, B, 3 * H, dtype=dt),
        dh0=torch.empty(B, H, dtype=dt),
        db_ih=torch.empty(3 * H, dtype=dt),
        db_hh=torch.empty(3 * H, dtype=dt),
    )
    out["gates_x"] = None if project_into_saved else torch.empty(T, B, 3 * H, dtype=dt)
    _C.gru_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], p["h0"], None, False, out["gates_x"],
                   out["y"], out["h_n"], out["saved"], _workspace("gru_forward", dt, T, B, I, H, threads), threads)
    _C.gru_backward(p["w_hh"], out["saved"], p["h0"], out["y"], None, False, p["dy"], p["dh_n"], out["dgates_x"],
                    out["dgates_h"], out["dh0"], _workspace("gru_backward", dt, T, B, 0, H, threads), threads,
                    db_ih=out["db_ih"], db_hh=out["db_hh"])
    return out


def _tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=2e-5)


def _assert_column_sums(got, dgates, expected, dtype):
    """A bias gradient the kernel summed: against the reference's, and against its own dgates
    summed in float64, which it must match within the rounding of its row tiles' sums and of
    the result."""
    np.testing.assert_allclose(_np(got), expected, **_tolerance(dtype))
    rows = dgates.reshape(-1, dgates.shape[-1])
    sums, magnitudes = rows.sum(0), np.abs(rows).sum(0)
    # The kernel adds each row tile's sum (of at most 8 rows, in dtype) to a float64 sum, then
    # rounds that to dtype once.
    eps = 2.0**-24 if dtype == torch.float32 else 2.0**-53
    bound = (8 * eps + len(rows) * 2.0**-53) * magnitudes + eps * np.abs(sums)
    assert (np.abs(_np(got) - sums) <= bound).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_kernels_match_reference(isa, dtype, threads, shape):
    T, B, I, H = shape
    p = _lstm_problem(T, B, I, H, dtype)
    out = _run_lstm(p, threads)
    args = [_np(p[k]) for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")]
    y, (h_n, c_n) = ref.lstm(*args)
    grads = ref.lstm_grad(*args, _np(p["dy"]), _np(p["dh_n"]), _np(p["dc_n"]))
    tol = _tolerance(dtype)
    np.testing.assert_allclose(_np(out["y"]), y, **tol)
    np.testing.assert_allclose(_np(out["h_n"]), h_n, **tol)
    np.testing.assert_allclose(_np(out["c_n"]), c_n, **tol)
    dgates = _np(out["dgates"]).reshape(T * B, 4 * H)
    _assert_column_sums(out["db"], dgates, grads["b_ih"], dtype)
    np.testing.assert_allclose((dgates @ _np(p["w_ih"])).reshape(T, B, I), grads["x"], **tol)
    np.testing.assert_allclose(_np(out["dh0"]), grads["h0"], **tol)
    np.testing.assert_allclose(_np(out["dc0"]), grads["c0"], **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_gru_kernels_match_reference(isa, dtype, threads, shape):
    T, B, I, H = shape
    p = _gru_problem(T, B, I, H, dtype)
    out = _run_gru(p, threads)
    args = [_np(p[k]) for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0")]
    y, h_n = ref.gru(*args)
    grads = ref.gru_grad(*args, _np(p["dy"]), _np(p["dh_n"]))
    tol = _tolerance(dtype)
    np.testing.assert_allclose(_np(out["y"]), y, **tol)
    np.testing.assert_allclose(_np(out["h_n"]), h_n, **tol)
    dgx = _np(out["dgates_x"]).reshape(T * B, 3 * H)
    dgh = _np(out["dgates_h"]).reshape(T * B, 3 * H)
    h_prev = np.concatenate([_np(p["h0"])[None], _np(out["y"])[:-1]]).reshape(T * B, H)
    _assert_column_sums(out["db_ih"], dgx, grads["b_ih"], dtype)
    _assert_column_sums(out["db_hh"], dgh, grads["b_hh"], dtype)
    np.testing.assert_allclose((dgx @ _np(p["w_ih"])).reshape(T, B, I), grads["x"], **tol)
    np.testing.assert_allclose(dgh.T @ h_prev, grads["w_hh"], **tol)
    np.testing.assert_allclose(_np(out["dh0"]), grads["h0"], **tol)


# (T, B, I, H): the forward's input projection runs by chunks of steps, in inference into its
# workspace and in training into gates_x (recurrence.h, projection_chunk_steps); these shapes
# take one chunk; several, the last one shorter; one step per chunk. Where a thread's
# weight panels fit in its L2 (these shapes' do, where the L2's size is known) chunks are about
# 128 KiB, trimmed to whole super-tiles of rows: the second and third shapes take one step per
# chunk and the last several with a shorter last one (AVX-512, float64: LSTM 10 steps, GRU 26).
# Elsewhere chunks are 2 MiB: the second shape takes several (LSTM float64: 5 steps; GRU
# float64: 7; LSTM float32: 10), the third one step each. Batches that the row tiles (3 rows
# for the LSTM, 4 for the GRU on AVX2) do not divide, so that chunks end in partial tiles.
INFERENCE_SHAPES = [(6, 5, 7, 37), (12, 301, 9, 40), (3, 1102, 5, 80), (65, 3, 5, 64)]
# Calls of at most 2·kLanes rows in all (8 to 32 by build and dtype) multiply from the rows of
# each weight whose rows take 1 KiB or more instead of packing it (recurrence.h,
# short_call_reads_rows): I (or H) = 256 is 1 KiB in float32, 128 in float64; 255 is just under
# in float32. Rows on both sides of each build's limit; at B = 1 only W_ih's rule changes.
SHORT_SHAPES = [(5, 1, 256, 40), (8, 1, 128, 24), (9, 1, 128, 24), (16, 1, 256, 33), (17, 1, 256, 33),
                (32, 1, 256, 20), (33, 1, 256, 17), (12, 1, 255, 24), (4, 2, 256, 256), (8, 4, 256, 260),
                (11, 3, 256, 256), (2, 8, 128, 128), (3, 5, 9, 300)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", INFERENCE_SHAPES + SHORT_SHAPES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_forward_by_chunks_matches_reference(isa, cell, shape, threads, dtype):
    """The training forward, whose projection goes into gates_x chunk by chunk, against the
    NumPy reference."""
    T, B, I, H = shape
    tol = _tolerance(dtype)
    if cell == "lstm":
        p = _lstm_problem(T, B, I, H, dtype)
        out = _run_lstm(p, threads)
        y, (h_n, c_n) = ref.lstm(*[_np(p[k]) for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")])
        np.testing.assert_allclose(_np(out["c_n"]), c_n, **tol)
    else:
        p = _gru_problem(T, B, I, H, dtype)
        out = _run_gru(p, threads)
        y, h_n = ref.gru(*[_np(p[k]) for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0")])
    np.testing.assert_allclose(_np(out["y"]), y, **tol)
    np.testing.assert_allclose(_np(out["h_n"]), h_n, **tol)


# L2 sizes the kernels are told to plan for (_C.set_l2_cache_bytes): unknown (2 MiB chunks,
# W_ih panels in groups of 512 KiB), 64 KiB (2 MiB chunks, groups of one or two panels), 64 MiB
# (every thread's panels fit: chunks of about 128 KiB, one group). The last shape's W_ih panels
# (I = 1024: 64 to 256 KiB a block, by instruction set and cell) are a group each at 64 KiB.
L2_SIZES = [0, 64 << 10, 64 << 20]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", INFERENCE_SHAPES + [(3, 10, 1024, 64)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_kernels_do_not_depend_on_the_l2_size(isa, cell, shape, threads, dtype):
    """The chunks of the input projection and the groups of W_ih's panels follow the L2's size;
    the results do not: training forward and backward, bit for bit, for every L2 size the
    kernels can be told, as for this machine's."""
    T, B, I, H = shape
    p = (_lstm_problem if cell == "lstm" else _gru_problem)(T, B, I, H, dtype)
    run = _run_lstm if cell == "lstm" else _run_gru
    expected = run(p, threads)
    for size in L2_SIZES:
        before = _C.set_l2_cache_bytes(size)
        try:
            assert _C.l2_cache_bytes() == size
            out = run(p, threads)
        finally:
            _C.set_l2_cache_bytes(before)
        for name, value in expected.items():
            if value is not None:
                assert torch.equal(out[name], value), (size, name)


@pytest.mark.parametrize("given_gates_x", [False, True], ids=["chunked", "gates_x"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", INFERENCE_SHAPES + SHORT_SHAPES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_forward_matches_training_forward(isa, cell, shape, threads, dtype, given_gates_x):
    """Without saved tensors (inference) the forward gives the same outputs as the training
    forward, bit for bit, whether it projects the inputs into a given gates_x or into its
    workspace, one chunk at a time."""
    T, B, I, H = shape
    G = 4 if cell == "lstm" else 3
    gates_x = torch.empty(T, B, G * H, dtype=dtype) if given_gates_x else None
    workspace = _workspace(f"{cell}_forward", dtype, T, B, I, H, threads)
    y, h_n, c_n = torch.empty(T, B, H, dtype=dtype), torch.empty(B, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    if cell == "lstm":
        p = _lstm_problem(T, B, I, H, dtype)
        full = _run_lstm(p, threads)
        _C.lstm_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], None, p["h0"], p["c0"], None, False,
                        gates_x, y, h_n, c_n, None, None, None, workspace, threads)
        assert torch.equal(c_n, full["c_n"])
    else:
        p = _gru_problem(T, B, I, H, dtype)
        full = _run_gru(p, threads)
        _C.gru_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], p["h0"], None, False, gates_x, y, h_n,
                       None, workspace, threads)
    assert torch.equal(y, full["y"])
    assert torch.equal(h_n, full["h_n"])


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_inference_matches_training_by_chunks_in_every_layout(mode, packed):
    """The layers' inference (projection into the workspace) against their training forward
    (projection into the saved activations), bit for bit: both directions, padded and packed,
    several chunks."""
    T, B, I, H = 12, 300, 9, 40
    torch.manual_seed(0)
    module = getattr(fastgates, mode)(I, H, bidirectional=True, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    if packed:
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
        x = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    with torch.no_grad():
        inference = module(x)
    training = module(x)
    data = (lambda y: y.data) if packed else (lambda y: y)
    for a, b in zip(outputs_flat(mode, (data(inference[0]), inference[1])),
                    outputs_flat(mode, (data(training[0]), training[1])), strict=True):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("shape", [(20, 11, 9, 70), (24, 1, 256, 70)], ids=["packed", "short-B1"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_results_are_bit_identical_across_runs_and_thread_counts(cell, shape):
    T, B, I, H = shape
    problem, run = (_lstm_problem, _run_lstm) if cell == "lstm" else (_gru_problem, _run_gru)
    p = problem(T, B, I, H, torch.float32)
    first = run(p, 2)
    for threads in (2, 1, 2):
        again = run(p, threads)
        for name, value in first.items():
            assert torch.equal(value, again[name]), (name, threads)


def test_long_sequence_stays_accurate():
    T, B, I, H = 1000, 2, 3, 8
    p = _lstm_problem(T, B, I, H, torch.float64)
    out = _run_lstm(p, 2)
    args = [_np(p[k]) for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")]
    y, _ = ref.lstm(*args)
    np.testing.assert_allclose(_np(out["y"]), y, rtol=1e-9, atol=1e-11)


def test_extreme_pre_activations_saturate_without_nan():
    T, B, I, H = 3, 2, 4, 9
    for dtype in (torch.float32, torch.float64):
        p = _lstm_problem(T, B, I, H, dtype)
        p["w_ih"] = p["w_ih"] * 1e4
        out = _run_lstm(p, 1)
        assert torch.isfinite(out["y"]).all() and torch.isfinite(out["dgates"]).all()
        assert out["y"].abs().max() <= 1.0


def test_float32_activations_are_accurate(isa):
    """The float32 sigmoid and tanh of the CPU kernels (cell/math.h's exp_fast on vectors)
    against float64, over pre-activations from -20 to 20: largest error 1.7e-7 on every build.
    A reciprocal estimate in place of the sigmoid's division, without a Newton step, fails
    here (8e-5 with AVX-512, 5e-4 with AVX2 and SSE)."""
    H = 1001  # a partial last block of units
    pre = torch.linspace(-20, 20, 4 * H, dtype=torch.float32)
    p = _lstm_problem(1, 1, 1, H, torch.float32)
    p.update(w_ih=torch.zeros(4 * H, 1), w_hh=torch.zeros(4 * H, H), b_ih=pre, b_hh=torch.zeros(4 * H),
             h0=torch.zeros(1, H), c0=torch.linspace(-3, 3, H).reshape(1, H))
    out = _run_lstm(p, 1)
    x = pre.double().numpy().reshape(4, H)
    sigmoid = 1 / (1 + np.exp(-x))
    expected = np.concatenate([sigmoid[0], sigmoid[1], np.tanh(x[2]), sigmoid[3]])
    np.testing.assert_allclose(_np(out["saved_gates"]).ravel(), expected, rtol=1e-6, atol=1e-6)
    i, f, g, o = (_np(out["saved_gates"]).reshape(4, H))
    c = f * _np(p["c0"])[0] + i * g
    np.testing.assert_allclose(_np(out["y"]).ravel(), o * np.tanh(c), rtol=1e-6, atol=1e-6)


def test_nan_input_propagates():
    p = _lstm_problem(2, 1, 3, 4, torch.float32)
    p["x"][0, 0, 0] = float("nan")
    out = _run_lstm(p, 1)
    assert torch.isnan(out["y"][0, 0, 0])


# ---- sequence layouts: packed rows, reverse direction, projection ---------------------------

LAYOUTS = [
    ("LSTM", dict(bidirectional=True), True),
    ("GRU", dict(bidirectional=True), True),
    ("LSTM", dict(proj_size=13, bidirectional=True), True),
    ("LSTM", dict(proj_size=5), False),
]


def _layer_outputs(module, x, lengths, packed):
    """Outputs, final states and every gradient of a loss that weighs each output differently."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    x = x.detach().requires_grad_(True)
    inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
    out, states = module(inp)
    if packed:
        out = pad_packed_sequence(out)[0]
    states = states if isinstance(states, tuple) else (states,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    loss = (out * weights).sum() + sum((s * s).sum() for s in states)
    return [out, *states, *torch.autograd.grad(loss, [x, *module.parameters()])]


# (T, B, I, H, lengths, proj_size when the layout has one). "short": 16 rows with weight rows of
# 1 KiB or more, which read the weights' rows in place instead of packing them (recurrence.h,
# short_call_reads_rows) in float32 on every build and in float64 with AVX-512.
SIZES = {"small": (7, 5, 11, 37, [7, 3, 6, 1, 3], None), "short": (4, 4, 256, 300, [4, 2, 3, 1], 256)}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode, kwargs, packed", LAYOUTS, ids=["lstm-packed-bi", "gru-packed-bi",
                                                               "lstm-proj-packed-bi", "lstm-proj"])
def test_sequence_layouts_every_isa_and_thread_count(isa, mode, kwargs, packed, size):
    # Several unit blocks per thread, tails in every dimension, sequences of different lengths.
    import fastgates

    T, B, I, H, lengths, proj_size = SIZES[size]
    lengths = torch.tensor(lengths)
    if "proj_size" in kwargs and proj_size is not None:
        kwargs = {**kwargs, "proj_size": proj_size}
    torch.manual_seed(0)
    twin = getattr(torch.nn, mode)(I, H, dtype=torch.float64, **kwargs)
    layer = fastgates.from_torch(twin)
    layer32 = fastgates.from_torch(twin).float()
    x = torch.randn(T, B, I, dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        expected = _layer_outputs(twin, x, lengths, packed)
        results = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got = _layer_outputs(layer, x, lengths, packed)
            for e, g in zip(expected, got, strict=True):
                torch.testing.assert_close(g, e, **_tolerance(torch.float64))
            results[threads] = _layer_outputs(layer32, x.float(), lengths, packed)
        # The kernels' outputs are bit-identical across thread counts; the gradients also pass
        # through torch's GEMMs, whose summation order may depend on the thread count.
        kernel_outputs = 3 if mode == "LSTM" else 2
        for i, (one, two) in enumerate(zip(results[1], results[2], strict=True)):
            if i < kernel_outputs:
                assert torch.equal(one, two)
            else:
                torch.testing.assert_close(one, two, **_tolerance(torch.float32))
    finally:
        torch.set_num_threads(before)


# ---- the binding's own checks --------------------------------------------------------------

def _lstm_forward_args(T=3, B=2, I=4, H=5, dtype=torch.float32):
    return dict(
        x=torch.zeros(T, B, I, dtype=dtype), w_ih=torch.zeros(4 * H, I, dtype=dtype), b_ih=None, b_hh=None,
        w_hh=torch.zeros(4 * H, H, dtype=dtype), w_hr=None, h0=torch.zeros(B, H, dtype=dtype),
        c0=torch.zeros(B, H, dtype=dtype), batch_sizes=None, reverse=False, gates_x=torch.empty(T, B, 4 * H, dtype=dtype),
        y=torch.empty(T, B, H, dtype=dtype), h_n=torch.empty(B, H, dtype=dtype), c_n=torch.empty(B, H, dtype=dtype),
        saved_gates=None, saved_c=None, saved_m=None, workspace=_workspace("lstm_forward", dtype, T, B, I, H, 1), num_threads=1,
    )


def test_binding_accepts_valid_arguments():
    _C.lstm_forward(**_lstm_forward_args())


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(h0=torch.zeros(3, 5)), "argument 'h0' has shape (3, 5), expected (2, 5)"),
        (dict(w_hh=torch.zeros(20, 4)), "argument 'w_hh' has shape (20, 4), expected (20, 5)"),
        (dict(w_hh=torch.zeros(19, 5)), "its first dimension must be 4 * hidden_size"),
        (dict(w_hr=torch.zeros(5, 5)), "proj_size must be smaller than hidden_size"),
        (dict(w_hr=torch.zeros(2, 5)), "argument 'w_hh' has shape (20, 5), expected (20, 2)"),
        (dict(batch_sizes=torch.tensor([2, 2, 2])), "argument 'x' must have 2 dimensions"),
        (dict(batch_sizes=torch.tensor([2, 2, 2], dtype=torch.int32), x=torch.zeros(6, 4)),
         "argument 'batch_sizes' has dtype int32, expected int64"),
        (dict(batch_sizes=torch.tensor([2, 1, 2]), x=torch.zeros(5, 4)), "non-increasing"),
        (dict(batch_sizes=torch.tensor([2, 2, 1]), x=torch.zeros(6, 4)), "batch_sizes add up to 5 rows"),
        (dict(batch_sizes=torch.tensor([3, 2, 1]), x=torch.zeros(6, 4)), "argument 'h0' has shape (2, 5), expected (3, 5)"),
        (dict(w_ih=torch.zeros(20, 3)), "argument 'w_ih' has shape (20, 3), expected (20, 4)"),
        (dict(b_ih=torch.zeros(21)), "argument 'b_ih' has shape (21,), expected (20,)"),
        (dict(b_hh=torch.zeros(20, 1)), "argument 'b_hh' has shape (20, 1), expected (20,)"),
        (dict(b_hh=torch.zeros(20, dtype=torch.float64)), "argument 'b_hh' has dtype float64, expected float32"),
        (dict(c0=torch.zeros(2, 5, dtype=torch.float64)), "argument 'c0' has dtype float64, expected float32"),
        (dict(y=torch.empty(2, 3, 5).transpose(0, 1)), "argument 'y' with shape (3, 2, 5) is not contiguous"),
        (dict(x=torch.zeros(3, 2, 4, dtype=torch.float16)), "dtype float16 is not supported"),
        (dict(x=torch.zeros(3, 2)), "argument 'x' must have 3 dimensions"),
        (dict(x=torch.zeros(0, 2, 4)), "every size must be at least 1"),
        (dict(workspace=torch.empty(8, dtype=torch.uint8)), "workspace has 8 bytes"),
        (dict(num_threads=0), "num_threads must be at least 1"),
        (dict(saved_gates=torch.empty(3, 2, 20)), "must be given together"),
    ],
)
def test_binding_rejects_bad_arguments(change, message):
    args = _lstm_forward_args()
    args.update(change)
    with pytest.raises(ValueError) as info:
        _C.lstm_forward(**args)
    assert message in str(info.value)


def test_binding_rejects_outputs_that_alias_inputs():
    args = _lstm_forward_args()
    args["h_n"] = args["h0"]
    with pytest.raises(ValueError, match="output 'h_n' shares memory with 'h0'"):
        _C.lstm_forward(**args)
    args = _lstm_forward_args()
    args["c_n"] = args["y"][0]
    with pytest.raises(ValueError, match="outputs 'y' and 'c_n' share memory|outputs 'c_n' and 'y' share memory"):
        _C.lstm_forward(**args)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 40, 9, 50), (1, 40, 5, 300), (1, 30, 140, 131), (5, 3, 17, 31), (4, 33, 6, 17)])
def test_backward_without_initial_state_gradients(isa, threads, shape):
    # dh0 (LSTM: and/or dc0) None: the kernels skip what only those need, and every other
    # output is the full call's, bit for bit; so are the bias gradients given or not.
    T, B, I, H = shape
    p = _lstm_problem(T, B, I, H, torch.float32)
    full = _run_lstm(p, threads)
    for want_h0, want_c0, want_b in [(False, False, True), (False, True, False), (True, False, True),
                                     (True, True, False)]:
        dgates = torch.empty_like(full["dgates"])
        dh0 = torch.empty_like(full["dh0"]) if want_h0 else None
        dc0 = torch.empty_like(full["dc0"]) if want_c0 else None
        db = torch.empty_like(full["db"]) if want_b else None
        _C.lstm_backward(p["w_hh"], None, full["saved_gates"], full["saved_c"], p["c0"], None, False, p["dy"],
                         p["dh_n"], p["dc_n"], dgates, None, dh0, dc0,
                         _workspace("lstm_backward", torch.float32, T, B, 0, H, threads), threads, db)
        assert torch.equal(dgates, full["dgates"])
        for got, key in ((dh0, "dh0"), (dc0, "dc0"), (db, "db")):
            assert got is None or torch.equal(got, full[key])
    q = _gru_problem(T, B, I, H, torch.float32)
    full = _run_gru(q, threads)
    for want_ih, want_hh in [(False, False), (True, False), (False, True)]:
        dgates_x, dgates_h = torch.empty_like(full["dgates_x"]), torch.empty_like(full["dgates_h"])
        db_ih = torch.empty_like(full["db_ih"]) if want_ih else None
        db_hh = torch.empty_like(full["db_hh"]) if want_hh else None
        _C.gru_backward(q["w_hh"], full["saved"], q["h0"], full["y"], None, False, q["dy"], q["dh_n"], dgates_x,
                        dgates_h, None, _workspace("gru_backward", torch.float32, T, B, 0, H, threads), threads,
                        db_ih, db_hh)
        assert torch.equal(dgates_x, full["dgates_x"]) and torch.equal(dgates_h, full["dgates_h"])
        for got, key in ((db_ih, "db_ih"), (db_hh, "db_hh")):
            assert got is None or torch.equal(got, full[key])


def test_backward_bindings_check_the_bias_gradients():
    T, B, I, H = 3, 2, 4, 5
    p = _lstm_problem(T, B, I, H, torch.float32)
    full = _run_lstm(p, 1)

    def lstm(db):
        _C.lstm_backward(p["w_hh"], None, full["saved_gates"], full["saved_c"], p["c0"], None, False, p["dy"],
                         p["dh_n"], p["dc_n"], torch.empty_like(full["dgates"]), None, None, None,
                         _workspace("lstm_backward", torch.float32, T, B, 0, H, 1), 1, db)

    for db, message in [(torch.empty(21), "argument 'db' has shape (21,), expected (20,)"),
                        (torch.empty(4, 5), "argument 'db' has shape (4, 5), expected (20,)"),
                        (torch.empty(20, dtype=torch.float64), "argument 'db' has dtype float64, expected float32"),
                        (p["dy"].view(-1)[:20], "output 'db' shares memory with 'dy'")]:
        with pytest.raises(ValueError) as info:
            lstm(db)
        assert message in str(info.value)
    q = _gru_problem(T, B, I, H, torch.float32)
    full = _run_gru(q, 1)
    dgates_h = torch.empty_like(full["dgates_h"])
    for db_ih, db_hh, message in [(torch.empty(16), None, "argument 'db_ih' has shape (16,), expected (15,)"),
                                  (None, dgates_h.view(-1)[:15], "share memory")]:
        with pytest.raises(ValueError) as info:
            _C.gru_backward(q["w_hh"], full["saved"], q["h0"], full["y"], None, False, q["dy"], q["dh_n"],
                            torch.empty_like(full["dgates_x"]), dgates_h, None,
                            _workspace("gru_backward", torch.float32, T, B, 0, H, 1), 1, db_ih, db_hh)
        assert message in str(info.value)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode, kwargs", [("LSTM", {}), ("LSTM", {"proj_size": 7}), ("GRU", {})],
                         ids=["lstm", "lstm-proj", "gru"])
def test_backward_reads_a_shared_gradient_row_in_place(isa, threads, dtype, packed, mode, kwargs):
    # A dy whose rows are all one row in memory (the gradient of y.sum() or y.mean(), expanded)
    # reaches the kernels as that row (dy_one_row); a missing one as a row of zeros. Every
    # gradient is the one of the same values in a dense dy, bit for bit: both directions,
    # several unit blocks per thread, sequences of different lengths.
    torch.manual_seed(0)
    layer = fastgates.from_torch(getattr(torch.nn, mode)(11, 37, bidirectional=True, dtype=dtype, **kwargs))
    x = torch.randn(6, 5, 11, dtype=dtype)
    row = torch.randn(2 * kwargs.get("proj_size", 37), dtype=dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert_shared_gradient_rows_act_as_dense(layer, x, packed, row)
    finally:
        torch.set_num_threads(before)


def test_sequence_gradients_reach_the_kernels_as_one_row_where_they_can():
    from fastgates import _reused_arrays
    from fastgates.ops._common import grad_or_zeros, kernel_sequence_gradient

    row = torch.arange(5.0)
    for expanded in (row.expand(3, 2, 5), torch.ones(()).expand(3, 2, 5), grad_or_zeros(None, torch.empty(3, 2, 5)),
                     row.expand(4, 5), torch.arange(10.0).expand(3, 2, 10)[:, :, 5:]):
        one = kernel_sequence_gradient(expanded)
        assert one.shape == (5,) and one.is_contiguous() and torch.equal(one.expand(expanded.shape), expanded)
    dense = torch.randn(3, 2, 5)
    assert kernel_sequence_gradient(dense) is dense
    for strided in (torch.randn(3, 2, 10)[:, :, ::2], torch.randn(2, 3, 5).transpose(0, 1),
                    torch.randn(3, 1, 5).expand(3, 2, 5)):
        got = kernel_sequence_gradient(strided)
        assert got.shape == strided.shape and got.is_contiguous() and torch.equal(got, strided)
    large = torch.randn(300, 2, 2048)[:, :, ::2]  # a copy of at least _reused_arrays.MIN_BYTES
    assert _reused_arrays.is_large(large.shape, large)
    assert torch.equal(kernel_sequence_gradient(large), large)


def test_backward_bindings_check_a_shared_gradient_row():
    T, B, I, H = 3, 2, 4, 5
    p = _lstm_problem(T, B, I, H, torch.float32)
    full = _run_lstm(p, 1)
    q = _gru_problem(T, B, I, H, torch.float32)
    gru = _run_gru(q, 1)

    def lstm(dy):
        _C.lstm_backward(p["w_hh"], None, full["saved_gates"], full["saved_c"], p["c0"], None, False, dy,
                         p["dh_n"], p["dc_n"], torch.empty_like(full["dgates"]), None, None, None,
                         _workspace("lstm_backward", torch.float32, T, B, 0, H, 1), 1)

    def gru_(dy):
        _C.gru_backward(q["w_hh"], gru["saved"], q["h0"], gru["y"], None, False, dy, q["dh_n"],
                        torch.empty_like(gru["dgates_x"]), torch.empty_like(gru["dgates_h"]), None,
                        _workspace("gru_backward", torch.float32, T, B, 0, H, 1), 1)

    for run in (lstm, gru_):
        run(torch.zeros(H))  # one row for every row of the sequence
        for dy, message in [(torch.zeros(H + 1), "argument 'dy' has shape (6,), expected (5,)"),
                            (torch.zeros(B, H), "argument 'dy' has shape (2, 5), expected (3, 2, 5)"),
                            (torch.zeros(2 * H)[::2], "argument 'dy' with shape (5,) is not contiguous"),
                            (torch.zeros(H, dtype=torch.float64), "argument 'dy' has dtype float64")]:
            with pytest.raises(ValueError) as info:
                run(dy)
            assert message in str(info.value)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_training_forward_may_project_into_its_saved_array(isa, threads, shape, mode):
    """The same results, bit for bit, as with a separate gates_x."""
    problem, run = (_lstm_problem, _run_lstm) if mode == "LSTM" else (_gru_problem, _run_gru)
    p = problem(*shape, torch.float32)
    separate, shared = run(p, threads), run(p, threads, project_into_saved=True)
    for name, tensor in separate.items():
        if name != "gates_x":
            assert torch.equal(shared[name], tensor), name


def test_binding_rejects_saved_gates_that_partly_overlap_gates_x():
    args = _lstm_forward_args()
    T, B, G = args["gates_x"].shape
    storage = torch.empty(T * B * G + 1)
    args.update(gates_x=storage[:-1].view(T, B, G), saved_gates=storage[1:].view(T, B, G),
                saved_c=torch.empty(T, B, G // 4))
    with pytest.raises(ValueError, match="outputs 'gates_x' and 'saved_gates' share memory|"
                                         "outputs 'saved_gates' and 'gates_x' share memory"):
        _C.lstm_forward(**args)


def test_binding_rejects_non_tensors():
    args = _lstm_forward_args()
    args["h0"] = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(TypeError, match="argument 'h0' must be a torch.Tensor"):
        _C.lstm_forward(**args)


class _LooksLikeATensor:
    """Has every attribute the binding reads, with sizes that are not a tuple of ints."""

    dtype = torch.float32
    is_cpu = True

    def __init__(self, shape, strides):
        self.shape, self._strides = shape, strides

    def data_ptr(self):
        return 0

    def stride(self):
        return self._strides


@pytest.mark.parametrize("shape, strides", [([2, 5], (5, 1)), ((2, 5), (5.0, 1.0)), ((2, "5"), (5, 1))])
def test_binding_rejects_objects_whose_sizes_are_not_a_tuple_of_ints(shape, strides):
    args = _lstm_forward_args()
    args["h0"] = _LooksLikeATensor(shape, strides)
    with pytest.raises(TypeError, match="argument 'h0' must be a torch.Tensor, got _LooksLikeATensor"):
        _C.lstm_forward(**args)


def test_binding_rejects_tensors_of_more_dimensions_than_it_reads():
    args = _lstm_forward_args()
    args["h0"] = args["h0"].reshape(*args["h0"].shape, *[1] * 8)
    with pytest.raises(ValueError, match="argument 'h0' has 10 dimensions; the kernels take at most 8"):
        _C.lstm_forward(**args)


def test_set_cpu_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown instruction set"):
        _C.set_cpu_isa("sse9")


def _forked_layer_run(layer, x, expected_y, queue):
    # As in a DataLoader worker, which runs torch with one thread: libgomp (torch's OpenMP
    # runtime, which fastgates shares) cannot start a thread team in a forked child.
    torch.set_num_threads(1)
    with torch.no_grad():
        y, _ = layer(x)
    queue.put(bool(torch.allclose(y, expected_y, rtol=1e-5, atol=1e-6)))


def test_layers_work_in_a_forked_child():
    """Forked workers (DataLoader) after the parent has run the kernels on several threads."""
    import multiprocessing

    import fastgates

    torch.manual_seed(0)
    layer = fastgates.LSTM(5, 40)
    x = torch.randn(6, 4, 5)
    with torch.no_grad():
        expected, _ = layer(x)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forked_layer_run, args=(layer, x, expected, queue))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=5) is True


def test_lstm_kernel_without_inputs_uses_the_bias_alone():
    """input_size 0 is valid for the kernel: the input projection is the bias."""
    T, B, H = 4, 3, 10
    with_input = _lstm_problem(T, B, 1, H, torch.float64)
    with_input["x"].zero_()
    expected = _run_lstm(with_input, 2)
    without = dict(with_input, x=torch.zeros(T, B, 0, dtype=torch.float64),
                   w_ih=torch.zeros(4 * H, 0, dtype=torch.float64))
    got = _run_lstm(without, 2)
    for name in ("y", "h_n", "c_n", "dgates", "dh0", "dc0"):
        assert torch.equal(got[name], expected[name]), name


@pytest.mark.parametrize("shape", [(1, 1, 37, 67), (1, 30, 140, 131), (5, 3, 17, 31), (6, 1, 13, 130)])
def test_lstm_kernel_sums_the_two_biases_as_torch_nn_does(isa, shape):
    """The kernel takes b_ih and b_hh and adds their sum (rounded once, as torch.nn's
    b_ih + b_hh) to the products: bit for bit the results of that sum given as one bias, in
    either argument; without biases, those of zero biases."""
    T, B, I, H = shape
    p = _lstm_problem(T, B, I, H, torch.float32)
    both = _run_lstm(p, 2)
    summed = p["b_ih"] + p["b_hh"]
    zeros = torch.zeros_like(summed)
    for biases, expected in (((summed, None), both), ((None, summed), both),
                             ((None, None), _run_lstm(dict(p, b_ih=zeros, b_hh=zeros), 2))):
        got = _run_lstm(dict(p, b_ih=biases[0], b_hh=biases[1]), 2)
        for name in ("y", "h_n", "c_n", "saved_gates", "saved_c", "dgates"):
            assert torch.equal(got[name], expected[name]), (name, [b is None for b in biases])


def test_peak_measurement_runs_on_every_isa():
    # What the benchmarks divide by: a FLOP rate, finite and positive (its size is not tested).
    before = _C.cpu_isa()
    try:
        for isa in _C.supported_cpu_isas().split(","):
            _C.set_cpu_isa(isa)
            peak = _C.cpu_peak_gflops(1, 0.01)
            assert np.isfinite(peak) and peak > 0, (isa, peak)
    finally:
        _C.set_cpu_isa(before)
    for bad in [dict(num_threads=0), dict(num_threads=1, seconds=0.0), dict(num_threads=1, seconds=float("nan"))]:
        with pytest.raises(ValueError, match="cpu_peak_gflops"):
            _C.cpu_peak_gflops(**bad)
