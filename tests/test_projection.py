"""fastgates.LSTM with proj_size > 0 (LSTM projections: h_t = W_hr (o_t * tanh(c_t))) against
torch.nn.LSTM with identical weights: output / h_n / c_n shapes and values and every gradient
(weight_hr_l{k}[_reverse] included), alone and with num_layers, bidirectional, batch_first,
unbatched input, given hx, bias=False and packed input; parameters, state dicts, conversion to
and from torch.nn, errors for states of the wrong size, torch.compile and the meta device."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import fastgates
from rnn_helpers import (
    DTYPES,
    assert_close,
    assert_constructed_like,
    assert_same_packed_results,
    assert_same_parameters,
    grad_names,
    make_input,
    make_pair,
    make_padded,
    make_states,
    output_names,
    outputs_flat,
    packer,
    run_packed_with_grads,
    run_with_grads,
    state_layers,
)

pytestmark = pytest.mark.usefixtures("each_cpu_gemm")  # conftest.py: with both CPU GEMMs

STEPS, BATCH, INPUT, HIDDEN = 5, 3, 4, 7
PROJ_SIZES = [1, 3, HIDDEN - 1]


def _compare(dtype, proj, kw, *, steps=STEPS, batch=BATCH, input_size=INPUT, hidden=HIDDEN):
    kw = dict(kw)
    unbatched = kw.pop("unbatched", False)
    with_hx = kw.pop("with_hx", True)
    evaluate = kw.pop("eval", False)
    ours, ref = make_pair("LSTM", input_size, hidden, dtype=dtype, proj_size=proj, **kw)
    if evaluate:
        ours.eval()
        ref.eval()
    assert ours.proj_size == proj
    batch_first = kw.get("batch_first", False)
    x, _ = make_input("LSTM", steps, batch, input_size, hidden, dtype=dtype,
                      batch_first=batch_first, unbatched=unbatched, with_hx=False)
    layers = state_layers(kw)
    hx = None
    if with_hx:
        hx = make_states("LSTM", layers, batch, hidden, dtype=dtype, proj_size=proj,
                         unbatched=unbatched)
    out_ours, grads_ours = run_with_grads("LSTM", ours, x, hx)
    out_ref, grads_ref = run_with_grads("LSTM", ref, x, hx)

    # Shapes: output (..., D * proj_size), h_n (L*D, [B,] proj_size), c_n (L*D, [B,] hidden).
    directions = 2 if kw.get("bidirectional") else 1
    lead = (layers,) if unbatched else (layers, batch)
    if unbatched:
        y_shape = (steps, directions * proj)
    elif batch_first:
        y_shape = (batch, steps, directions * proj)
    else:
        y_shape = (steps, batch, directions * proj)
    assert tuple(out_ours[0].shape) == y_shape
    assert tuple(out_ours[1].shape) == (*lead, proj)
    assert tuple(out_ours[2].shape) == (*lead, hidden)

    for name, a, b in zip(output_names("LSTM"), out_ours, out_ref, strict=True):
        assert_close(a, b, name)
    names = grad_names("LSTM", ref, with_hx)
    hr_names = [n for n in names if n.startswith("weight_hr_l")]
    assert len(hr_names) == layers
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert len(names) == len(grads_ours) == len(grads_ref)
    for name, a, b in zip(names, grads_ours, grads_ref, strict=True):
        assert_close(a, b, f"grad of {name}")
    for name, g in zip(names, grads_ours, strict=True):
        if name in hr_names:
            assert g.abs().max() > 0, f"grad of {name} is zero"


CONFIGS = [
    pytest.param({}, id="alone"),
    pytest.param({"with_hx": False}, id="hx_none"),
    pytest.param({"num_layers": 2}, id="L2"),
    pytest.param({"bidirectional": True}, id="bi"),
    pytest.param({"num_layers": 2, "bidirectional": True}, id="L2-bi"),
    pytest.param({"num_layers": 3, "bidirectional": True, "with_hx": False}, id="L3-bi-hx_none"),
    pytest.param({"batch_first": True}, id="batch_first"),
    pytest.param({"num_layers": 2, "bidirectional": True, "batch_first": True},
                 id="L2-bi-batch_first"),
    pytest.param({"unbatched": True}, id="unbatched"),
    pytest.param({"unbatched": True, "with_hx": False}, id="unbatched-hx_none"),
    pytest.param({"num_layers": 2, "bidirectional": True, "unbatched": True},
                 id="L2-bi-unbatched"),
    pytest.param({"bias": False}, id="no_bias"),
    pytest.param({"num_layers": 2, "bidirectional": True, "bias": False}, id="L2-bi-no_bias"),
    pytest.param({"num_layers": 3, "dropout": 0.5, "eval": True}, id="L3-dropout-eval"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("proj", PROJ_SIZES, ids=lambda p: f"P{p}")
@pytest.mark.parametrize("kw", CONFIGS)
def test_projection_matches_torch_nn(kw, proj, dtype):
    _compare(dtype, proj, kw)


def test_projection_other_sizes():
    # One step, one sequence; hidden 2 with proj 1; a modest float32 case.
    _compare(torch.float64, 1, {"num_layers": 2, "bidirectional": True}, steps=1, batch=1,
             input_size=1, hidden=2)
    _compare(torch.float32, 20, {"num_layers": 2, "bidirectional": True, "batch_first": True},
             steps=25, batch=6, input_size=12, hidden=48)
    # At most 4 rows in all: the forward's products read the weights' rows directly
    # (recurrence.h, direct_products), here with partial vectors along every dimension.
    _compare(torch.float64, 21, {"num_layers": 2, "bidirectional": True}, steps=2, batch=1,
             input_size=19, hidden=37)
    _compare(torch.float32, 5, {}, steps=1, batch=2, input_size=40, hidden=35)
    # One sequence with proj_size and hidden_size of 8 vectors or more (AVX-512: 16 floats or
    # 8 doubles a vector): the recurrent products read W_hh's and W_hr's rows directly
    # (direct_recurrent_products).
    _compare(torch.float64, 70, {"num_layers": 2}, steps=6, batch=1, input_size=9, hidden=75)
    _compare(torch.float32, 130, {}, steps=6, batch=1, input_size=9, hidden=133)


def test_projection_every_isa(isa):
    # In one step the backward reads W_hr in place for whole blocks of hidden units and packs a
    # partial last block (recurrent_product.h, columns_in_place); over several steps it packs.
    _compare(torch.float64, 20, {"bidirectional": True}, steps=1, batch=3, input_size=7, hidden=37)
    _compare(torch.float32, 11, {}, steps=4, batch=9, input_size=5, hidden=40)
    # One step of 9 rows with every size at least 8 vectors (AVX-512 float32: 128): the forward
    # reads W_ih, W_hh and W_hr in place (recurrence.h, direct_products).
    _compare(torch.float32, 130, {}, steps=1, batch=9, input_size=135, hidden=140)


@pytest.mark.parametrize("threads", [1, 3])
def test_projection_other_thread_counts(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _compare(torch.float64, 4, {"bidirectional": True}, hidden=11)
    finally:
        torch.set_num_threads(before)


def test_projection_no_grad_and_inference_mode():
    ours, ref = make_pair("LSTM", INPUT, HIDDEN, proj_size=3, num_layers=2, bidirectional=True)
    x, _ = make_input("LSTM", STEPS, BATCH, INPUT, HIDDEN, dtype=torch.float64, with_hx=False)
    hx = make_states("LSTM", 4, BATCH, HIDDEN, dtype=torch.float64, proj_size=3)
    expected = outputs_flat("LSTM", ref(x, hx))
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            got = outputs_flat("LSTM", ours(x, hx))
        for name, a, b in zip(output_names("LSTM"), got, expected, strict=True):
            assert not a.requires_grad
            assert_close(a, b, f"{name} under {ctx.__name__}")


@pytest.mark.parametrize("which", ["output", "h_n", "c_n", "output.sum"])
def test_projection_gradients_when_only_some_outputs_are_used(which):
    ours, ref = make_pair("LSTM", INPUT, HIDDEN, proj_size=3, bidirectional=True)
    x, _ = make_input("LSTM", STEPS, BATCH, INPUT, HIDDEN, dtype=torch.float64, with_hx=False)
    hx = make_states("LSTM", 2, BATCH, HIDDEN, dtype=torch.float64, proj_size=3)
    grads = []
    for module in (ours, ref):
        xl = x.clone().requires_grad_(True)
        outs = outputs_flat("LSTM", module(xl, hx))
        if which == "output.sum":
            loss = outs[0].sum()
        else:
            loss = (outs[output_names("LSTM").index(which)] ** 2).sum()
        grads.append(torch.autograd.grad(loss, [xl, *module.parameters()]))
    names = ["input"] + [n for n, _ in ref.named_parameters()]
    for name, a, b in zip(names, *grads, strict=True):
        assert_close(a, b, f"grad of {name} through {which} only")


def test_projection_training_steps_match_torch_nn():
    # A few SGD steps: the layers stay equal (weight_hr updated too).
    ours, ref = make_pair("LSTM", INPUT, 6, proj_size=2, num_layers=2)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    for step in range(3):
        x, _ = make_input("LSTM", 5, 3, INPUT, 6, dtype=torch.float64, seed=10 + step,
                          with_hx=False)
        for module, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad()
            sum(o.square().mean() for o in outputs_flat("LSTM", module(x))).backward()
            opt.step()
    for (name, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert_close(a, b, f"{name} after 3 SGD steps")


# (id, lengths, how, layer kwargs)
PACKED_CASES = [
    pytest.param([3, 5, 1, 4], "unsorted", {"bidirectional": True}, id="bi-unsorted"),
    pytest.param([5, 4, 4, 1], "sorted", {}, id="sorted"),
    pytest.param([7, 7, 5, 2, 2, 1], "sorted", {"num_layers": 2, "bidirectional": True},
                 id="L2-bi-runs"),
    pytest.param([2, 7, 1, 5, 2, 7], "unsorted",
                 {"num_layers": 2, "bidirectional": True, "batch_first": True},
                 id="L2-bi-batch_first-unsorted"),
    pytest.param([2, 5, 1, 3], "list", {"bidirectional": True, "bias": False},
                 id="bi-no_bias-list"),
]


@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "hx_none"])
@pytest.mark.parametrize("proj", [1, 3], ids=lambda p: f"P{p}")
@pytest.mark.parametrize("lengths, how, kw", PACKED_CASES)
def test_projection_packed_matches_torch_nn(lengths, how, kw, proj, with_hx):
    dtype = torch.float64
    ours, ref = make_pair("LSTM", INPUT, HIDDEN, dtype=dtype, proj_size=proj, **kw)
    batch_first = kw.get("batch_first", False)
    padded = make_padded(lengths, INPUT, dtype=dtype, batch_first=batch_first)
    hx = None
    if with_hx:
        hx = make_states("LSTM", state_layers(kw), len(lengths), HIDDEN, dtype=dtype,
                         proj_size=proj)
    leaves_from_padded, pack = packer(how, lengths, batch_first=batch_first)
    leaves = leaves_from_padded(padded)
    got, grads_ours = run_packed_with_grads("LSTM", ours, leaves, pack, hx,
                                            batch_first=batch_first)
    expected, grads_ref = run_packed_with_grads("LSTM", ref, leaves, pack, hx,
                                                batch_first=batch_first)
    directions = 2 if kw.get("bidirectional") else 1
    assert got["data"].shape == (sum(lengths), directions * proj)
    assert got["h_n"].shape == (state_layers(kw), len(lengths), proj)
    assert got["c_n"].shape == (state_layers(kw), len(lengths), HIDDEN)
    assert_same_packed_results(got, expected)
    names = ([f"input[{i}]" for i in range(len(leaves))] + (["h_0", "c_0"] if with_hx else [])
             + [n for n, _ in ref.named_parameters()])
    assert len(names) == len(grads_ours) == len(grads_ref)
    for name, a, b in zip(names, grads_ours, grads_ref, strict=True):
        assert_close(a, b, f"grad of {name}")


# ---------------------------------------------------------------------------------------------
# Parameters, state dicts, conversion.

LAYOUTS = [
    pytest.param({"proj_size": 3}, id="P3"),
    pytest.param({"proj_size": 1, "bias": False}, id="P1-no_bias"),
    pytest.param({"proj_size": 4, "num_layers": 2}, id="P4-L2"),
    pytest.param({"proj_size": 2, "bidirectional": True}, id="P2-bi"),
    pytest.param({"proj_size": 3, "num_layers": 3, "bidirectional": True, "batch_first": True,
                  "dropout": 0.25}, id="P3-L3-bi-batch_first-dropout"),
    pytest.param({"proj_size": 4, "num_layers": 2, "bidirectional": True, "bias": False},
                 id="P4-L2-bi-no_bias"),
]


@pytest.mark.parametrize("kw", LAYOUTS)
def test_projection_parameters_like_torch_nn(kw):
    torch.manual_seed(123)
    ref = torch.nn.LSTM(6, 5, **kw)
    torch.manual_seed(123)
    ours = fastgates.LSTM(6, 5, **kw)
    assert_constructed_like(ours, ref)
    assert ours.proj_size == ref.proj_size == kw["proj_size"]
    # all_weights per layer and direction: w_ih, w_hh, [b_ih, b_hh,] w_hr.
    assert [list(ws) for ws in ours._all_weights] == ref._all_weights
    assert all(ws[-1].startswith("weight_hr_l") for ws in ours._all_weights)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert [[(p.shape, p.dtype) for p in ws] for ws in ours.all_weights] == [
        [(p.shape, p.dtype) for p in ws] for ws in ref.all_weights
    ]
    assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights,
                                                     ours._flat_weights_names, strict=True))
    for layer in range(kw.get("num_layers", 1)):
        for suffix in ("", "_reverse") if kw.get("bidirectional") else ("",):
            name = f"weight_hr_l{layer}{suffix}"
            assert getattr(ours, name).shape == (kw["proj_size"], 5), name
            # Layers > 0 take the previous layer's projected output.
            w_ih = getattr(ours, f"weight_ih_l{layer}{suffix}")
            d = 2 if kw.get("bidirectional") else 1
            assert w_ih.shape == (20, 6 if layer == 0 else d * kw["proj_size"])
            assert getattr(ours, f"weight_hh_l{layer}{suffix}").shape == (20, kw["proj_size"])


@pytest.mark.parametrize("kw", LAYOUTS)
def test_projection_state_dict_both_ways(kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer is not in LAYOUTS, but safe
        ours = fastgates.LSTM(6, 5, dtype=torch.float64, **kw).eval()
        ref = torch.nn.LSTM(6, 5, dtype=torch.float64, **kw).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in ref.state_dict().items()]
    assert any(k.startswith("weight_hr_l") for k in ours.state_dict())
    x = torch.randn(4, 2, 6, dtype=torch.float64)
    if kw.get("batch_first"):
        x = x.transpose(0, 1)

    # torch.nn -> fastgates
    result = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name, a, b in zip(output_names("LSTM"), outputs_flat("LSTM", ours(x)),
                          outputs_flat("LSTM", ref(x)), strict=True):
        assert_close(a, b, f"{name} after torch.nn -> fastgates")

    # fastgates -> torch.nn
    ours.reset_parameters()
    result = ref.load_state_dict(ours.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name, a, b in zip(output_names("LSTM"), outputs_flat("LSTM", ours(x)),
                          outputs_flat("LSTM", ref(x)), strict=True):
        assert_close(a, b, f"{name} after fastgates -> torch.nn")


def test_projection_state_dict_mismatch_is_rejected():
    # A projected state dict into a layer without projections (and the other way) must fail.
    plain = fastgates.LSTM(6, 5)
    projected = fastgates.LSTM(6, 5, proj_size=3)
    with pytest.raises(RuntimeError, match="weight_hr_l0"):
        plain.load_state_dict(torch.nn.LSTM(6, 5, proj_size=3).state_dict(), strict=True)
    with pytest.raises(RuntimeError, match="weight_hr_l0"):
        projected.load_state_dict(torch.nn.LSTM(6, 5).state_dict(), strict=True)
    with pytest.raises(RuntimeError, match="size mismatch"):
        projected.load_state_dict(torch.nn.LSTM(6, 5, proj_size=2).state_dict(), strict=True)


@pytest.mark.parametrize(
    "kw",
    [pytest.param({"proj_size": 2}, id="P2"),
     pytest.param({"proj_size": 3, "num_layers": 2, "bidirectional": True, "batch_first": True},
                  id="P3-L2-bi-batch_first")],
)
def test_projection_from_torch_and_to_torch_round_trip(kw):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(INPUT, HIDDEN, dtype=torch.float64, **kw).eval()
    ours = fastgates.from_torch(ref)
    assert type(ours) is fastgates.LSTM
    assert ours.proj_size == kw["proj_size"]
    assert repr(ours) == repr(ref) and ours.training is False
    assert_same_parameters(ours, ref)
    x, _ = make_input("LSTM", STEPS, BATCH, INPUT, HIDDEN, dtype=torch.float64,
                      batch_first=kw.get("batch_first", False), with_hx=False)
    expected = outputs_flat("LSTM", ref(x))
    for name, a, b in zip(output_names("LSTM"), outputs_flat("LSTM", ours(x)), expected,
                          strict=True):
        assert_close(a, b, f"from_torch: {name}")

    back = ours.to_torch()
    assert type(back) is torch.nn.LSTM
    assert back.proj_size == kw["proj_size"]
    assert repr(back) == repr(ref) and back.training is False
    assert_same_parameters(back, ref)
    for a, b in zip(outputs_flat("LSTM", back(x)), expected, strict=True):
        assert torch.equal(a, b)


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(INPUT, INPUT)
        self.rnn = torch.nn.LSTM(INPUT, HIDDEN, proj_size=3, num_layers=2, bidirectional=True,
                                 batch_first=True)
        self.plain = torch.nn.GRU(6, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        y, (h, c) = self.rnn(torch.tanh(self.encoder(x)))
        assert h.shape[-1] == 3 and c.shape[-1] == HIDDEN
        z, _ = self.plain(y.transpose(0, 1))
        return self.head(z[-1])


def test_convert_model_with_projected_lstm():
    torch.manual_seed(0)
    model = _Model().double().eval()
    x = torch.randn(3, 5, INPUT, dtype=torch.float64)
    before = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left unconverted, so no warning
        assert fastgates.convert(model) is model
    assert type(model.rnn) is fastgates.LSTM and model.rnn.proj_size == 3
    assert type(model.plain) is fastgates.GRU
    assert model.rnn.training is False
    assert model.rnn.weight_hr_l1_reverse.dtype == torch.float64
    assert_close(model(x), before, "converted model output")

    top = torch.nn.LSTM(INPUT, HIDDEN, proj_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = fastgates.convert(top)
    assert type(new) is fastgates.LSTM and new.proj_size == 2
    assert_same_parameters(new, top)


# ---------------------------------------------------------------------------------------------
# States of the wrong size: torch.nn's exception type (and, where torch.nn's message names the
# same shapes, its message inside ours, as for the other state errors in test_errors.py).


def _states(*shapes):
    return tuple(torch.zeros(s) for s in shapes)


# (id, layer kwargs, input shape, (h_0 shape, c_0 shape), parity)
BAD_STATE_CASES = [
    ("h0-hidden_size", {}, (5, 2, 4), ((1, 2, 7), (1, 2, 7)), "message"),
    ("c0-proj_size", {}, (5, 2, 4), ((1, 2, 3), (1, 2, 3)), "message"),
    ("h0-c0-swapped", {}, (5, 2, 4), ((1, 2, 7), (1, 2, 3)), "message"),
    ("h0-hidden_size-L2-bi", {"num_layers": 2, "bidirectional": True}, (5, 2, 4),
     ((4, 2, 7), (4, 2, 7)), "message"),
    ("c0-proj_size-L2-bi", {"num_layers": 2, "bidirectional": True}, (5, 2, 4),
     ((4, 2, 3), (4, 2, 3)), "message"),
    ("h0-hidden_size-batch_first", {"batch_first": True}, (2, 5, 4), ((1, 2, 7), (1, 2, 7)),
     "message"),
    ("h0-hidden_size-unbatched", {}, (5, 4), ((1, 7), (1, 7)), "type"),
    ("c0-proj_size-unbatched", {}, (5, 4), ((1, 3), (1, 3)), "type"),
]


@pytest.mark.parametrize(
    "kw, input_shape, shapes, parity",
    [pytest.param(*case[1:], id=case[0]) for case in BAD_STATE_CASES],
)
def test_projection_wrong_state_sizes_raise_like_torch_nn(kw, input_shape, shapes, parity):
    x = torch.zeros(input_shape)
    hx = _states(*shapes)
    ref = torch.nn.LSTM(4, 7, proj_size=3, **kw)
    ours = fastgates.LSTM(4, 7, proj_size=3, **kw)
    with pytest.raises(Exception) as expected:
        ref(x, hx)
    with pytest.raises(Exception) as got:
        ours(x, hx)
    assert got.type is expected.type, f"{got.type.__name__}: {got.value}"
    if parity == "message":
        assert str(expected.value) in str(got.value)


def test_projection_packed_wrong_state_size_raises_like_torch_nn():
    from torch.nn.utils.rnn import pack_padded_sequence

    packed = pack_padded_sequence(torch.zeros(5, 2, 4), torch.tensor([5, 3]))
    for shapes in (((1, 2, 7), (1, 2, 7)), ((1, 2, 3), (1, 2, 3))):
        hx = _states(*shapes)
        ref = torch.nn.LSTM(4, 7, proj_size=3)
        ours = fastgates.LSTM(4, 7, proj_size=3)
        with pytest.raises(Exception) as expected:
            ref(packed, hx)
        with pytest.raises(Exception) as got:
            ours(packed, hx)
        assert got.type is expected.type, f"{shapes}: {got.type.__name__}: {got.value}"


# ---------------------------------------------------------------------------------------------
# torch.compile, the meta device.


class _Wrapper(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = fastgates.LSTM(INPUT, HIDDEN, proj_size=3, num_layers=2, bidirectional=True)
        self.head = torch.nn.Linear(2 * 3, 1)

    def forward(self, x, hx):
        y, (h, c) = self.rnn(x, hx)
        return self.head(y), h, c


def test_projection_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = _Wrapper()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend="inductor")
    x, _ = make_input("LSTM", STEPS, BATCH, INPUT, HIDDEN, dtype=torch.float32, with_hx=False)
    hx = make_states("LSTM", 4, BATCH, HIDDEN, dtype=torch.float32, proj_size=3)
    results = []
    for fn, model in ((eager, eager), (compiled, compiled_model)):
        xl = x.clone().requires_grad_(True)
        outs = fn(xl, hx)
        assert outs[1].shape == (4, BATCH, 3) and outs[2].shape == (4, BATCH, HIDDEN)
        loss = sum((o * o).sum() for o in outs)
        grads = torch.autograd.grad(loss, [xl, *model.parameters()])
        results.append([o.detach() for o in outs] + list(grads))
    names = ["head(y)", "h_n", "c_n", "input"] + [n for n, _ in eager.named_parameters()]
    assert "rnn.weight_hr_l1_reverse" in names
    for name, a, b in zip(names, *results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_projection_meta_device_shapes():
    m = fastgates.LSTM(4, 5, proj_size=2, num_layers=2, bidirectional=True, device="meta",
                       batch_first=True)
    y, (h, c) = m(torch.empty(3, 7, 4, device="meta"))
    assert y.shape == (3, 7, 4) and y.device.type == "meta"
    assert h.shape == (4, 3, 2) and c.shape == (4, 3, 5)
    y, (h, c) = m(torch.empty(7, 4, device="meta"))
    assert y.shape == (7, 4) and h.shape == (4, 2) and c.shape == (4, 5)
