"""fastgates.LSTM / fastgates.GRU against torch.nn.LSTM / torch.nn.GRU with identical weights:
outputs, final states and every gradient; plus construction, state dicts and the NumPy
reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgates
from rnn_helpers import (
    DTYPES,
    MODES,
    Halve,
    assert_close,
    assert_constructed_like,
    assert_gradients_with_halved,
    grad_names,
    make_input,
    make_pair,
    make_states,
    output_names,
    outputs_flat,
    run_with_grads,
    run_with_grads_at_threads,
    STACKED_LAYOUTS,
)

pytestmark = pytest.mark.usefixtures("each_cpu_gemm")  # conftest.py: with both CPU GEMMs

# (steps, batch, input_size, hidden_size, options)
SHAPES = [
    pytest.param(1, 1, 1, 1, {}, id="T1-B1-I1-H1"),
    pytest.param(1, 3, 4, 5, {}, id="T1"),
    pytest.param(5, 1, 3, 1, {}, id="B1-H1"),
    pytest.param(6, 4, 17, 31, {}, id="odd"),
    pytest.param(6, 4, 17, 31, {"batch_first": True}, id="odd-batch_first"),
    pytest.param(6, 4, 17, 31, {"bias": False}, id="odd-no_bias"),
    pytest.param(6, 4, 17, 31, {"unbatched": True}, id="odd-unbatched"),
    pytest.param(6, 4, 17, 31, {"with_hx": False}, id="odd-hx_none"),
    pytest.param(5, 3, 7, 9, {"unbatched": True, "batch_first": True, "with_hx": False},
                 id="unbatched-batch_first-hx_none"),
    pytest.param(4, 2, 5, 6, {"batch_first": True, "bias": False, "with_hx": False},
                 id="batch_first-no_bias-hx_none"),
    pytest.param(1000, 2, 8, 16, {}, id="long-T1000", marks=pytest.mark.slow),
    pytest.param(3, 4, 64, 512, {}, id="large-H512", marks=pytest.mark.slow),
]


def _compare(mode, dtype, steps, batch, input_size, hidden, opts):
    opts = dict(opts)
    unbatched = opts.pop("unbatched", False)
    with_hx = opts.pop("with_hx", True)
    ours, ref = make_pair(mode, input_size, hidden, dtype=dtype, **opts)
    x, hx = make_input(mode, steps, batch, input_size, hidden, dtype=dtype,
                       batch_first=opts.get("batch_first", False), unbatched=unbatched,
                       with_hx=with_hx)
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for name, a, b in zip(output_names(mode), out_ours, out_ref, strict=True):
        assert_close(a, b, name)
    for name, a, b in zip(grad_names(mode, ref, with_hx), grads_ours, grads_ref, strict=True):
        assert_close(a, b, f"grad of {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("steps, batch, input_size, hidden, opts", SHAPES)
def test_matches_torch_nn(mode, dtype, steps, batch, input_size, hidden, opts):
    _compare(mode, dtype, steps, batch, input_size, hidden, opts)


@pytest.mark.parametrize("hidden", [1, 2, 37])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch_nn_other_thread_counts(mode, threads, hidden):
    # The kernels split the hidden units between torch.get_num_threads() threads (also when
    # there are more threads than units).
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _compare(mode, torch.float64, 7, 3, 5, hidden, {})
    finally:
        torch.set_num_threads(before)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(DTYPES),
    steps=st.integers(1, 12),
    batch=st.integers(1, 5),
    input_size=st.integers(1, 9),
    hidden=st.integers(1, 20),
    batch_first=st.booleans(),
    bias=st.booleans(),
    unbatched=st.booleans(),
    with_hx=st.booleans(),
)
def test_matches_torch_nn_random_configurations(mode, dtype, steps, batch, input_size, hidden,
                                                batch_first, bias, unbatched, with_hx):
    opts = {"batch_first": batch_first, "bias": bias, "unbatched": unbatched, "with_hx": with_hx}
    _compare(mode, dtype, steps, batch, input_size, hidden, opts)


@pytest.mark.parametrize("mode", MODES)
def test_results_are_deterministic(mode):
    ours, _ = make_pair(mode, 6, 13, dtype=torch.float32)
    x, hx = make_input(mode, 9, 3, 6, 13, dtype=torch.float32)
    first = run_with_grads(mode, ours, x, hx)
    second = run_with_grads(mode, ours, x, hx)
    for a, b in zip(first[0] + first[1], second[0] + second[1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_training_at_a_benchmark_size_is_reproducible_across_runs_and_threads(mode):
    # Large enough that the kernels and torch's GEMMs for the weight and input gradients run
    # on two threads. Run after run: bit for bit. One thread against two: the kernels' outputs
    # bit for bit (each unit block is computed the same way by whichever thread owns it), the
    # gradients (torch's GEMMs split their sums by thread count) within float32 tolerance. (With
    # fastgates' GEMM they are bit for bit too: test_cpu_gemm.py.)
    steps, batch, size = 50, 32, 128
    ours, ref = make_pair(mode, size, size, dtype=torch.float32)
    x, hx = make_input(mode, steps, batch, size, size, dtype=torch.float32)
    first = run_with_grads_at_threads(2, mode, ours, x, hx)
    second = run_with_grads_at_threads(2, mode, ours, x, hx)
    single = run_with_grads_at_threads(1, mode, ours, x, hx)
    outputs, grads = output_names(mode), grad_names(mode, ours, True)
    for name, a, b in zip(outputs + grads, first[0] + first[1], second[0] + second[1], strict=True):
        assert torch.equal(a, b), f"{name} differs between two runs"
    for name, a, b in zip(outputs, first[0], single[0], strict=True):
        assert torch.equal(a, b), f"{name} differs between 2 threads and 1"
    for name, a, b in zip(grads, first[1], single[1], strict=True):
        assert_close(a, b, f"grad of {name}, 2 threads against 1")
    reference = run_with_grads(mode, ref, x, hx)
    for name, a, b in zip(outputs + grads, first[0] + first[1], reference[0] + reference[1], strict=True):
        assert_close(a, b, f"{name} against torch.nn")


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_inputs_give_correct_results(mode):
    steps, batch, input_size, hidden = 5, 3, 6, 7
    ours, ref = make_pair(mode, input_size, hidden, batch_first=True)
    g = torch.Generator().manual_seed(3)
    # input: every other feature of a wider tensor, then transposed (batch_first layout).
    wide = torch.randn(steps, batch, 2 * input_size, generator=g, dtype=torch.float64)
    x = wide[:, :, ::2].transpose(0, 1)
    assert not x.is_contiguous()
    # states: transposed storage.
    h0 = torch.randn(hidden, batch, generator=g, dtype=torch.float64).t().unsqueeze(0)
    c0 = torch.randn(hidden, batch, generator=g, dtype=torch.float64).t().unsqueeze(0)
    assert not h0.is_contiguous()
    hx = (h0, c0) if mode == "LSTM" else h0
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for a, b in zip(out_ours + grads_ours, out_ref + grads_ref, strict=True):
        assert_close(a, b, "non-contiguous")


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_parameter(mode):
    ours, ref = make_pair(mode, 4, 5)
    with torch.no_grad():
        w = ours.weight_hh_l0.detach().t().contiguous().t()  # same values, transposed strides
    ours.weight_hh_l0 = torch.nn.Parameter(w)
    assert not ours.weight_hh_l0.is_contiguous()
    x, hx = make_input(mode, 4, 2, 4, 5, dtype=torch.float64)
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for a, b in zip(out_ours + grads_ours, out_ref + grads_ref, strict=True):
        assert_close(a, b, "non-contiguous weight_hh_l0")


@pytest.mark.parametrize("mode", MODES)
def test_parametrized_weight(mode):
    """A weight under torch.nn.utils.parametrize is a property, no longer a registered
    parameter: the layer reads its current value at every call (inference, where the layers
    look parameters up by name in the registry first, and training), and the gradient reaches
    the original parameter."""
    ours, ref = make_pair(mode, 4, 5)
    torch.nn.utils.parametrize.register_parametrization(ours, "weight_hh_l0", Halve())
    with torch.no_grad():
        ref.weight_hh_l0.mul_(0.5)
    x, hx = make_input(mode, 3, 2, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(outputs_flat(mode, ours(x, hx)), outputs_flat(mode, ref(x, hx)), strict=True):
            assert_close(a, b, "inference with a parametrized weight_hh_l0")
    with torch.no_grad():  # the parametrization is recomputed from the changed original
        ours.parametrizations.weight_hh_l0.original.mul_(3.0)
        ref.weight_hh_l0.mul_(3.0)
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for a, b in zip(out_ours, out_ref, strict=True):
        assert_close(a, b, "training with a parametrized weight_hh_l0")
    # grads: of [input, *hx, *parameters()]
    assert_gradients_with_halved(ours, ref, grads_ours, grads_ref, "weight_hh_l0")


@pytest.mark.parametrize(
    "mode, which",
    [(m, w) for m in MODES for w in ("output", "h_n", "c_n", "output.sum")
     if not (m == "GRU" and w == "c_n")],
)
def test_gradients_when_only_some_outputs_are_used(mode, which):
    # Unused outputs reach the backward as None; .sum() reaches it as an expanded tensor.
    ours, ref = make_pair(mode, 3, 4)
    x, hx = make_input(mode, 5, 2, 3, 4, dtype=torch.float64)
    grads = []
    for module in (ours, ref):
        xl = x.clone().requires_grad_(True)
        outs = outputs_flat(mode, module(xl, hx))
        if which == "output.sum":
            loss = outs[0].sum()
        else:
            loss = (outs[output_names(mode).index(which)] ** 2).sum()
        grads.append(torch.autograd.grad(loss, [xl, *module.parameters()]))
    for a, b in zip(*grads, strict=True):
        assert_close(a, b, f"gradient through {which} only")


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("mode, wanted, kw", [
    ("LSTM", (), {}), ("LSTM", ("h_0",), {}), ("LSTM", ("c_0",), {}), ("LSTM", ("h_0",), {"proj_size": 2}),
    ("LSTM", ("c_0",), {"proj_size": 2}), ("GRU", (), {}), ("GRU", ("h_0",), {})])
def test_gradients_when_some_initial_states_need_none(mode, wanted, kw, steps):
    # Without a gradient for h_0 the backward kernel skips the last step's product with W_hh
    # (kernels.h): the other gradients must not change, here against torch.nn's.
    layers = 2  # num_layers: the second layer's h_0 and c_0 too
    grads = []
    for module in make_pair(mode, 3, 4, num_layers=layers, **kw):
        x, _ = make_input(mode, steps, 2, 3, 4, dtype=torch.float64)
        states = make_states(mode, layers, 2, 4, dtype=torch.float64, proj_size=kw.get("proj_size", 0))
        states = states if mode == "LSTM" else (states,)
        for name, state in zip(("h_0", "c_0"), states):
            state.requires_grad_(name in wanted)
        x.requires_grad_(True)
        outs = outputs_flat(mode, module(x, states if mode == "LSTM" else states[0]))
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view(o.shape)).sum() for o in outs)
        inputs = [x, *(s for s in states if s.requires_grad), *module.parameters()]
        grads.append(torch.autograd.grad(loss, inputs))
    for a, b in zip(*grads, strict=True):
        assert_close(a, b, f"gradients with {wanted or 'no'} initial state gradients")


@pytest.mark.parametrize("mode", MODES)
def test_frozen_parameters_input_gradient_only(mode):
    ours, ref = make_pair(mode, 3, 4)
    for m in (ours, ref):
        m.requires_grad_(False)
    x, _ = make_input(mode, 5, 2, 3, 4, dtype=torch.float64)
    grads = []
    for module in (ours, ref):
        xl = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(module(xl)[0].pow(2).sum(), xl)[0])
    assert_close(grads[0], grads[1], "grad of input")


@pytest.mark.parametrize("mode", MODES)
def test_no_grad_and_inference_mode(mode):
    ours, ref = make_pair(mode, 3, 4)
    x, hx = make_input(mode, 5, 2, 3, 4, dtype=torch.float64)
    expected = outputs_flat(mode, ref(x, hx))
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            got = outputs_flat(mode, ours(x, hx))
        for name, a, b in zip(output_names(mode), got, expected, strict=True):
            assert not a.requires_grad
            assert_close(a, b, f"{name} under {ctx.__name__}")


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_like_torch_nn(mode):
    # torch.nn accepts a batch of 0 sequences (and rejects 0 steps: see test_errors.py).
    ours, ref = make_pair(mode, 3, 4)
    x, hx = make_input(mode, 5, 0, 3, 4, dtype=torch.float64)
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for a, b in zip(out_ours + grads_ours, out_ref + grads_ref, strict=True):
        assert a.shape == b.shape
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_training_steps_match_torch_nn(mode):
    # A few SGD steps: the layers stay equal, so .grad accumulation and in-place updates work.
    ours, ref = make_pair(mode, 4, 6)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    for step in range(3):
        x, hx = make_input(mode, 5, 3, 4, 6, dtype=torch.float64, seed=10 + step)
        for module, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad()
            outs = outputs_flat(mode, module(x, hx))
            sum(o.square().mean() for o in outs).backward()
            opt.step()
    for (name, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert_close(a, b, f"{name} after 3 SGD steps")


@pytest.mark.parametrize("mode", MODES)
def test_bias_gradients_are_separate_tensors(mode):
    ours, _ = make_pair(mode, 3, 4)
    x, _ = make_input(mode, 5, 2, 3, 4, dtype=torch.float64)
    ours(x)[0].sum().backward()
    b_ih, b_hh = ours.bias_ih_l0.grad, ours.bias_hh_l0.grad
    assert b_ih.data_ptr() != b_hh.data_ptr()
    before = b_hh.clone()
    b_ih.mul_(0)  # e.g. gradient clipping in place must not touch the other
    assert torch.equal(b_hh, before)


# ---------------------------------------------------------------------------------------------
# Construction: parameters, initialisation, repr, state dicts.

CONFIGS = [
    {},
    {"bias": False},
    {"batch_first": True},
    {"bias": False, "batch_first": True},
]


@pytest.mark.parametrize("kw", CONFIGS + STACKED_LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_parameters_like_torch_nn(mode, kw):
    torch.manual_seed(123)
    ref = getattr(torch.nn, mode)(7, 5, **kw)
    torch.manual_seed(123)
    ours = getattr(fastgates, mode)(7, 5, **kw)
    assert_constructed_like(ours, ref)
    assert ours.extra_repr() == ref.extra_repr()
    for attr in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "dropout", "bidirectional", "proj_size"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    assert [[n for n in ws] for ws in ours._all_weights] == ref._all_weights
    assert ours._flat_weights_names == ref._flat_weights_names
    assert [[p.shape for p in ws] for ws in ours.all_weights] == [
        [p.shape for p in ws] for ws in ref.all_weights
    ]
    assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights,
                                                     ours._flat_weights_names, strict=True))
    assert hasattr(ours, "bias_ih_l0") == hasattr(ref, "bias_ih_l0")
    assert not isinstance(ours, torch.nn.RNNBase)


@pytest.mark.parametrize("mode", MODES)
def test_reset_parameters_bounds(mode):
    hidden = 9
    m = getattr(fastgates, mode)(4, hidden)
    bound = 1.0 / hidden ** 0.5
    for _ in range(2):
        m.reset_parameters()
        for name, p in m.named_parameters():
            assert p.abs().max() <= bound, name
            assert p.std() > bound / 4, name  # actually drawn, not constant


@pytest.mark.parametrize("mode", MODES)
def test_dtype_and_device_kwargs(mode):
    m = getattr(fastgates, mode)(4, 5, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in m.parameters())
    y = m(torch.randn(3, 2, 4, dtype=torch.float64))[0]
    assert y.dtype == torch.float64
    # .float() / .double() move it like torch.nn.
    m.float()
    assert m(torch.randn(3, 2, 4))[0].dtype == torch.float32


def test_dropout_warns_like_torch_nn():
    for mode in MODES:
        with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
            ours = getattr(fastgates, mode)(3, 4, dropout=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = getattr(torch.nn, mode)(3, 4, dropout=0.5)
        assert repr(ours) == repr(ref)
        assert ours.dropout == 0.5
        # With one layer dropout has no effect, in training mode too (as in torch.nn).
        ours.train()
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(4, 2, 3)
        torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", CONFIGS + STACKED_LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_state_dict_both_ways(mode, kw):
    ours = getattr(fastgates, mode)(6, 5, **kw).eval()  # eval: no dropout between layers
    ref = getattr(torch.nn, mode)(6, 5, **kw).eval()
    x = torch.randn(4, 2, 6)
    if kw.get("batch_first"):
        x = x.transpose(0, 1)

    # torch.nn -> fastgates
    result = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for a, b in zip(outputs_flat(mode, ours(x)), outputs_flat(mode, ref(x)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    # fastgates -> torch.nn
    ours.reset_parameters()
    ref.load_state_dict(ours.state_dict(), strict=True)
    for a, b in zip(outputs_flat(mode, ours(x)), outputs_flat(mode, ref(x)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert list(ours.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_bias_mismatch_is_rejected(mode):
    ours = getattr(fastgates, mode)(6, 5, bias=False)
    ref = getattr(torch.nn, mode)(6, 5)
    with pytest.raises(RuntimeError, match="bias_ih_l0"):
        ours.load_state_dict(ref.state_dict(), strict=True)


def test_meta_device_shapes():
    # On the meta device the ops' fake implementations run: shapes only.
    for mode in MODES:
        m = getattr(fastgates, mode)(4, 5, device="meta", batch_first=True)
        outs = outputs_flat(mode, m(torch.empty(2, 7, 4, device="meta")))
        assert outs[0].shape == (2, 7, 5) and outs[0].device.type == "meta"
        assert all(o.shape == (1, 2, 5) for o in outs[1:])


# ---------------------------------------------------------------------------------------------
# The NumPy float64 reference.


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize("steps, batch, input_size, hidden", [(1, 1, 1, 1), (7, 3, 5, 11)])
def test_lstm_matches_numpy_reference(steps, batch, input_size, hidden):
    ours, _ = make_pair("LSTM", input_size, hidden)
    x, (h0, c0) = make_input("LSTM", steps, batch, input_size, hidden, dtype=torch.float64)
    x = x.requires_grad_(True)
    h0 = h0.requires_grad_(True)
    c0 = c0.requires_grad_(True)
    y, (h_n, c_n) = ours(x, (h0, c0))
    g = torch.Generator().manual_seed(5)
    dy, dh, dc = (torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (y, h_n, c_n))
    ((y * dy).sum() + (h_n * dh).sum() + (c_n * dc).sum()).backward()

    p = {n: _np(t) for n, t in ours.named_parameters()}
    args = (_np(x), p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"],
            _np(h0[0]), _np(c0[0]))
    ry, (rh, rc) = fastgates.reference.lstm(*args)
    np.testing.assert_allclose(_np(y), ry, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_np(h_n[0]), rh, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_np(c_n[0]), rc, rtol=1e-10, atol=1e-12)
    rg = fastgates.reference.lstm_grad(*args, _np(dy), _np(dh[0]), _np(dc[0]))
    got = {"x": x.grad, "w_ih": ours.weight_ih_l0.grad, "w_hh": ours.weight_hh_l0.grad,
           "b_ih": ours.bias_ih_l0.grad, "b_hh": ours.bias_hh_l0.grad, "h0": h0.grad[0],
           "c0": c0.grad[0]}
    for name, t in got.items():
        np.testing.assert_allclose(_np(t), rg[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("steps, batch, input_size, hidden", [(1, 1, 1, 1), (7, 3, 5, 11)])
def test_gru_matches_numpy_reference(steps, batch, input_size, hidden):
    ours, _ = make_pair("GRU", input_size, hidden)
    x, h0 = make_input("GRU", steps, batch, input_size, hidden, dtype=torch.float64)
    x = x.requires_grad_(True)
    h0 = h0.requires_grad_(True)
    y, h_n = ours(x, h0)
    g = torch.Generator().manual_seed(5)
    dy, dh = (torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (y, h_n))
    ((y * dy).sum() + (h_n * dh).sum()).backward()

    p = {n: _np(t) for n, t in ours.named_parameters()}
    args = (_np(x), p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"],
            _np(h0[0]))
    ry, rh = fastgates.reference.gru(*args)
    np.testing.assert_allclose(_np(y), ry, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_np(h_n[0]), rh, rtol=1e-10, atol=1e-12)
    rg = fastgates.reference.gru_grad(*args, _np(dy), _np(dh[0]))
    got = {"x": x.grad, "w_ih": ours.weight_ih_l0.grad, "w_hh": ours.weight_hh_l0.grad,
           "b_ih": ours.bias_ih_l0.grad, "b_hh": ours.bias_hh_l0.grad, "h0": h0.grad[0]}
    for name, t in got.items():
        np.testing.assert_allclose(_np(t), rg[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_package_exports():
    assert fastgates.LSTM.__module__.startswith("fastgates")
    assert isinstance(fastgates.__version__, str) and fastgates.__version__
    assert fastgates.cpu_isa() in ("avx512", "avx2", "generic")
    assert hasattr(fastgates.reference, "lstm_grad")
    assert set(fastgates.__all__) >= {"LSTM", "GRU", "reference", "__version__"}
