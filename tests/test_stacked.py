"""Stacked (num_layers > 1) and bidirectional fastgates.LSTM / fastgates.GRU against torch.nn
with identical weights: outputs, final states and every gradient; dropout between layers;
parameters and state dicts."""

from __future__ import annotations

import warnings

import pytest
import torch

import fastgates
from rnn_helpers import (
    DTYPES,
    MODES,
    assert_close,
    grad_names,
    make_input,
    make_pair,
    output_names,
    outputs_flat,
    run_with_grads,
)

pytestmark = pytest.mark.usefixtures("each_cpu_gemm")  # conftest.py: with both CPU GEMMs

STEPS, BATCH, INPUT, HIDDEN = 5, 3, 4, 7

CONFIGS = [
    pytest.param({"num_layers": 2}, id="L2"),
    pytest.param({"num_layers": 3}, id="L3"),
    pytest.param({"bidirectional": True}, id="bi"),
    pytest.param({"num_layers": 2, "bidirectional": True}, id="L2-bi"),
    pytest.param({"num_layers": 3, "bidirectional": True}, id="L3-bi"),
    pytest.param({"num_layers": 2, "batch_first": True}, id="L2-batch_first"),
    pytest.param({"num_layers": 3, "bidirectional": True, "batch_first": True},
                 id="L3-bi-batch_first"),
    pytest.param({"num_layers": 2, "bidirectional": True, "bias": False}, id="L2-bi-no_bias"),
    pytest.param({"bidirectional": True, "bias": False, "batch_first": True},
                 id="bi-no_bias-batch_first"),
    pytest.param({"num_layers": 2, "bidirectional": True, "unbatched": True},
                 id="L2-bi-unbatched"),
    pytest.param({"num_layers": 3, "unbatched": True, "with_hx": False},
                 id="L3-unbatched-hx_none"),
    pytest.param({"bidirectional": True, "unbatched": True, "batch_first": True},
                 id="bi-unbatched-batch_first"),
    pytest.param({"num_layers": 2, "bidirectional": True, "with_hx": False},
                 id="L2-bi-hx_none"),
    pytest.param({"num_layers": 2, "bias": False, "batch_first": True, "with_hx": False},
                 id="L2-no_bias-batch_first-hx_none"),
    # dropout is inactive in eval mode: the same results as torch.nn's (eval) layer.
    pytest.param({"num_layers": 3, "bidirectional": True, "dropout": 0.5, "eval": True},
                 id="L3-bi-dropout-eval"),
]


def _state_layers(kw):
    return kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)


def _compare(mode, dtype, kw, steps=STEPS, batch=BATCH, input_size=INPUT, hidden=HIDDEN):
    kw = dict(kw)
    unbatched = kw.pop("unbatched", False)
    with_hx = kw.pop("with_hx", True)
    evaluate = kw.pop("eval", False)
    ours, ref = make_pair(mode, input_size, hidden, dtype=dtype, **kw)
    if evaluate:
        ours.eval()
        ref.eval()
    x, hx = make_input(mode, steps, batch, input_size, hidden, dtype=dtype,
                       batch_first=kw.get("batch_first", False), unbatched=unbatched,
                       with_hx=with_hx, layers=_state_layers(kw))
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for name, a, b in zip(output_names(mode), out_ours, out_ref, strict=True):
        assert_close(a, b, name)
    names = grad_names(mode, ref, with_hx)
    assert len(names) == len(grads_ours) == len(grads_ref)
    for name, a, b in zip(names, grads_ours, grads_ref, strict=True):
        assert_close(a, b, f"grad of {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", CONFIGS)
def test_stacked_bidirectional_matches_torch_nn(mode, dtype, kw):
    _compare(mode, dtype, kw)


@pytest.mark.parametrize("mode", MODES)
def test_stacked_bidirectional_other_sizes(mode):
    # One step, one sequence, one unit; and a wider layer with a longer sequence.
    _compare(mode, torch.float64, {"num_layers": 2, "bidirectional": True}, 1, 1, 1, 1)
    _compare(mode, torch.float64, {"num_layers": 2, "bidirectional": True}, 13, 2, 9, 33)


@pytest.mark.parametrize("mode", MODES)
def test_one_op_call_per_layer_and_direction(mode, monkeypatch):
    module = fastgates.nn.lstm if mode == "LSTM" else fastgates.nn.gru
    name = "_lstm" if mode == "LSTM" else "_gru"
    real = getattr(module, name)
    calls = []

    def counting(x, *args):
        calls.append(tuple(x.shape))
        return real(x, *args)

    monkeypatch.setattr(module, name, counting)
    m = getattr(fastgates, mode)(4, 5, num_layers=3, bidirectional=True)
    m(torch.randn(6, 2, 4))
    assert calls == [(6, 2, 4)] * 2 + [(6, 2, 10)] * 4


@pytest.mark.parametrize("mode", MODES)
def test_no_grad_stacked(mode):
    ours, ref = make_pair(mode, 4, 5, num_layers=2, bidirectional=True)
    x, hx = make_input(mode, 6, 3, 4, 5, dtype=torch.float64, layers=4)
    expected = outputs_flat(mode, ref(x, hx))
    with torch.inference_mode():
        got = outputs_flat(mode, ours(x, hx))
    for name, a, b in zip(output_names(mode), got, expected, strict=True):
        assert_close(a, b, name)


# ---------------------------------------------------------------------------------------------
# Dropout between layers.


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_dropout_in_training_mode(mode, bidirectional):
    kw = {"num_layers": 3, "bidirectional": bidirectional}
    layers = _state_layers(kw)
    x, hx = make_input(mode, 6, 4, 5, 8, dtype=torch.float64, layers=layers)

    # p > 0: training-mode results differ from eval mode; gradients flow.
    ours, _ = make_pair(mode, 5, 8, dropout=0.5, **kw)
    ours.eval()
    evaluated = outputs_flat(mode, ours(x, hx))
    ours.train()
    torch.manual_seed(0)
    trained, grads = run_with_grads(mode, ours, x, hx)
    assert not torch.allclose(trained[0], evaluated[0])
    # the first layer's final states see no dropout; the last layers' do.
    assert_close(trained[1][: 2 if bidirectional else 1],
                 evaluated[1][: 2 if bidirectional else 1], "first layer h_n")
    assert not torch.allclose(trained[1][-1], evaluated[1][-1])
    assert all(torch.isfinite(g).all() for g in grads)

    # p = 1: the inputs of layers > 0 are all zeros, deterministically: equal to torch.nn's.
    ours, ref = make_pair(mode, 5, 8, dropout=1.0, **kw)
    ours.train()
    ref.train()
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for name, a, b in zip(output_names(mode), out_ours, out_ref, strict=True):
        assert_close(a, b, f"{name} (dropout=1)")
    for name, a, b in zip(grad_names(mode, ref, True), grads_ours, grads_ref, strict=True):
        assert_close(a, b, f"grad of {name} (dropout=1)")

    # p = 0 in training mode: torch.nn's results.
    ours, ref = make_pair(mode, 5, 8, dropout=0.0, **kw)
    ours.train()
    ref.train()
    out_ours, grads_ours = run_with_grads(mode, ours, x, hx)
    out_ref, grads_ref = run_with_grads(mode, ref, x, hx)
    for a, b in zip(out_ours + grads_ours, out_ref + grads_ref, strict=True):
        assert_close(a, b, "dropout=0 in training mode")


@pytest.mark.parametrize("mode", MODES)
def test_dropout_uses_torch_rng(mode):
    ours, _ = make_pair(mode, 3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(7)
    a = ours(x)[0]
    torch.manual_seed(7)
    b = ours(x)[0]
    c = ours(x)[0]
    assert torch.equal(a, b)
    assert not torch.equal(b, c)


# ---------------------------------------------------------------------------------------------
# Construction: parameters, initialisation, repr, state dicts.

@pytest.mark.parametrize("mode", MODES)
def test_state_dict_layout_mismatch_is_rejected(mode):
    ours = getattr(fastgates, mode)(6, 5, num_layers=2)
    ref = getattr(torch.nn, mode)(6, 5, num_layers=2, bidirectional=True)
    with pytest.raises(RuntimeError, match="_reverse"):
        ours.load_state_dict(ref.state_dict(), strict=True)


def test_dropout_warning_only_for_one_layer():
    for mode in MODES:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            getattr(fastgates, mode)(3, 4, num_layers=2, dropout=0.5)
        with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
            getattr(fastgates, mode)(3, 4, bidirectional=True, dropout=0.5)


def test_meta_device_shapes_stacked():
    for mode in MODES:
        m = getattr(fastgates, mode)(4, 5, num_layers=2, bidirectional=True, device="meta",
                                     batch_first=True)
        outs = outputs_flat(mode, m(torch.empty(2, 7, 4, device="meta")))
        assert outs[0].shape == (2, 7, 10) and outs[0].device.type == "meta"
        assert all(o.shape == (4, 2, 5) for o in outs[1:])
