"""Bad arguments: constructor checks (as torch.nn's), unsupported settings, bad inputs and states.

Every error must be an exception (never a crash) of a documented type, naming the argument and,
for shapes, the shape received and the one expected. Where torch.nn raises a clear error for the
same input, fastgates raises the same type with torch.nn's message inside its own.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastgates
from fastgates import ops
from rnn_helpers import MODES

# ---------------------------------------------------------------------------------------------
# Constructor: torch.nn's validation, same types and messages.

BAD_CONSTRUCTOR_ARGS = [
    ((4, 8), {"dropout": -0.1}),
    ((4, 8), {"dropout": 1.5}),
    ((4, 8), {"dropout": True}),
    ((4, 8), {"dropout": "0.5"}),
    ((4, 8), {"bias": "yes"}),
    ((4, 8), {"bias": 1}),
    ((4, 8), {"batch_first": 1}),
    ((4, 8), {"batch_first": None}),
    ((1.5, 8), {}),
    ((0, 8), {}),
    ((-3, 8), {}),
    ((4, 0), {}),
    ((4, -1), {}),
    ((4, "8"), {}),
    ((4, 2.0), {}),
    ((4, 8), {"num_layers": 0}),
    ((4, 8), {"num_layers": -1}),
]
LSTM_ONLY_BAD_ARGS = [
    ((4, 8), {"proj_size": -1}),
    ((4, 8), {"proj_size": 8}),
    ((4, 8), {"proj_size": 9}),
]
GRU_ONLY_BAD_ARGS = [
    ((4, 8), {"proj_size": 0}),
    ((4, 8), {"proj_size": 2}),
]


def _constructor_error(cls, args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:
            cls(*args, **kwargs)
    return info


@pytest.mark.parametrize(
    "mode, args, kwargs",
    [(m, a, k) for m in MODES for a, k in BAD_CONSTRUCTOR_ARGS]
    + [("LSTM", a, k) for a, k in LSTM_ONLY_BAD_ARGS]
    + [("GRU", a, k) for a, k in GRU_ONLY_BAD_ARGS],
)
def test_constructor_validation_like_torch_nn(mode, args, kwargs):
    expected = _constructor_error(getattr(torch.nn, mode), args, kwargs)
    got = _constructor_error(getattr(fastgates, mode), args, kwargs)
    assert got.type is expected.type
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("mode", MODES)
def test_constructor_unknown_keyword(mode):
    for cls in (getattr(torch.nn, mode), getattr(fastgates, mode)):
        with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
            cls(4, 8, foo=1)


@pytest.mark.parametrize(
    "kwargs",
    [{"proj_size": 3}, {"proj_size": 3, "num_layers": 2, "bidirectional": True},
     {"proj_size": 7}],
)
def test_projections_are_supported(kwargs):
    # LSTM projections (proj_size > 0, below hidden_size) construct like torch.nn's; their
    # results are checked in test_projection.py.
    ref = torch.nn.LSTM(4, 8, **kwargs)
    m = fastgates.LSTM(4, 8, **kwargs)
    assert m.proj_size == kwargs["proj_size"]
    assert repr(m) == repr(ref)
    assert m.weight_hr_l0.shape == ref.weight_hr_l0.shape == (kwargs["proj_size"], 8)


@pytest.mark.parametrize(
    "mode, kwargs",
    [(m, k) for m in MODES for k in (
        {"num_layers": 2}, {"bidirectional": True}, {"num_layers": 3, "bidirectional": True},
        {"num_layers": 3, "dropout": 0.2},
    )],
)
def test_stacked_and_bidirectional_are_supported(mode, kwargs):
    m = getattr(fastgates, mode)(4, 8, **kwargs)
    assert m.num_layers == kwargs.get("num_layers", 1)
    assert m.bidirectional == kwargs.get("bidirectional", False)


@pytest.mark.parametrize("mode", MODES)
def test_packed_sequence_is_accepted(mode):
    # PackedSequence input returns a PackedSequence; results are checked in test_packed.py.
    m = getattr(fastgates, mode)(4, 3)
    packed = pack_padded_sequence(torch.randn(5, 2, 4), torch.tensor([5, 3]))
    out, _ = m(packed)
    assert isinstance(out, PackedSequence)
    assert out.data.shape == (8, 3) and torch.equal(out.batch_sizes, packed.batch_sizes)


# ---------------------------------------------------------------------------------------------
# forward: bad input and hx. Layers are (input_size=4, hidden_size=3), input (L=5, N=2, 4).


def x(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


def s(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


def hx(mode, h, c=None):
    if mode == "GRU":
        return h
    return (h, c if c is not None else (h.clone() if isinstance(h, torch.Tensor) else h))


# (id, module kwargs, input, hx builder (mode -> hx) or None, exception, substrings, parity)
#   parity: "message" = torch.nn raises the same type and its message is inside ours;
#           "type" = torch.nn raises the same type; None = torch.nn differs (or accepts it).
INPUT_CASES = [
    ("input-not-tensor", {}, [[0.0] * 4] * 5, None, TypeError, ["input", "torch.Tensor", "list"], None),
    ("input-1d", {}, x(4), None, ValueError, ["2D or 3D", "1D", "(4,)"], "message"),
    ("input-4d", {}, x(5, 2, 4, 1), None, ValueError, ["4D", "(5, 2, 4, 1)"], "message"),
    ("input-size", {}, x(5, 2, 5), None, RuntimeError,
     ["input_size", "Expected 4, got 5", "(5, 2, 5)", "(L, N, 4)"], "message"),
    ("input-size-batch_first", {"batch_first": True}, x(2, 5, 5), None, RuntimeError,
     ["(2, 5, 5)", "(N, L, 4)"], "message"),
    ("input-size-unbatched", {}, x(5, 5), None, RuntimeError, ["(5, 5)", "(L, 4)"], "message"),
    ("zero-steps", {}, x(0, 2, 4), None, RuntimeError, ["sequence length", "(0, 2, 4)"], "message"),
    ("zero-steps-batch_first", {"batch_first": True}, x(2, 0, 4), None, RuntimeError,
     ["sequence length", "(2, 0, 4)"], "message"),
    ("zero-steps-unbatched", {}, x(0, 4), None, RuntimeError, ["sequence length", "(0, 4)"], "message"),
    ("input-float64-module-float32", {}, x(5, 2, 4, dtype=torch.float64), None, ValueError,
     ["torch.float64", "torch.float32"], "message"),
    ("input-int64", {}, x(5, 2, 4, dtype=torch.int64), None, ValueError, ["torch.int64"], "message"),
    ("input-bool", {}, x(5, 2, 4, dtype=torch.bool), None, ValueError, ["torch.bool"], "message"),
    ("float16", {"dtype": torch.float16}, x(5, 2, 4, dtype=torch.float16), None, TypeError,
     ["input", "torch.float16", "float32", "float64"], None),
    ("bfloat16", {"dtype": torch.bfloat16}, x(5, 2, 4, dtype=torch.bfloat16), None, TypeError,
     ["input", "torch.bfloat16"], None),
    ("input-meta-module-cpu", {}, x(5, 2, 4, device="meta"), None, RuntimeError,
     ["input", "device meta", "cpu"], None),
    ("input-cpu-module-meta", {"device": "meta"}, x(5, 2, 4), None, RuntimeError,
     ["input", "device cpu", "meta"], None),
    # states
    ("hx-2d-batched", {}, x(5, 2, 4), lambda m: hx(m, s(2, 3)), RuntimeError,
     ["batched 3-D input", "3-D", "2-D"], "message"),
    ("hx-3d-unbatched", {}, x(5, 4), lambda m: hx(m, s(1, 1, 3)), RuntimeError,
     ["unbatched 2-D input", "2-D", "3-D"], "message"),
    ("hx-wrong-batch", {}, x(5, 2, 4), lambda m: hx(m, s(1, 3, 3), s(1, 3, 3)), RuntimeError,
     ["(1, 2, 3)", "[1, 3, 3]", "h_0", "(5, 2, 4)"], "message"),
    ("hx-wrong-layers", {}, x(5, 2, 4), lambda m: hx(m, s(2, 2, 3), s(2, 2, 3)), RuntimeError,
     ["(1, 2, 3)", "[2, 2, 3]"], "message"),
    ("hx-wrong-batch_first", {"batch_first": True}, x(2, 5, 4),
     lambda m: hx(m, s(1, 5, 3), s(1, 5, 3)), RuntimeError, ["(1, 2, 3)", "[1, 5, 3]"], "message"),
    ("hx-wrong-unbatched", {}, x(5, 4), lambda m: hx(m, s(1, 4), s(1, 4)), RuntimeError,
     ["(1, 3)", "[1, 4]", "unbatched"], "type"),
    ("hx-stacked-wrong-layers", {"num_layers": 2}, x(5, 2, 4),
     lambda m: hx(m, s(1, 2, 3), s(1, 2, 3)), RuntimeError,
     ["(2, 2, 3)", "[1, 2, 3]", "h_0", "num_layers * num_directions"], "message"),
    ("hx-bidirectional-wrong-layers", {"bidirectional": True}, x(5, 2, 4),
     lambda m: hx(m, s(1, 2, 3), s(1, 2, 3)), RuntimeError, ["(2, 2, 3)", "[1, 2, 3]"],
     "message"),
    ("hx-stacked-bidirectional-batch_first",
     {"num_layers": 2, "bidirectional": True, "batch_first": True}, x(2, 5, 4),
     lambda m: hx(m, s(4, 5, 3), s(4, 5, 3)), RuntimeError, ["(4, 2, 3)", "[4, 5, 3]"],
     "message"),
    ("hx-stacked-bidirectional-unbatched", {"num_layers": 2, "bidirectional": True}, x(5, 4),
     lambda m: hx(m, s(2, 3), s(2, 3)), RuntimeError, ["(4, 3)", "[2, 3]", "unbatched"],
     "type"),
    ("hx-dtype", {}, x(5, 2, 4), lambda m: hx(m, s(1, 2, 3, dtype=torch.float64)), ValueError,
     ["hx", "torch.float64", "torch.float32"], None),
    ("hx-device", {}, x(5, 2, 4), lambda m: hx(m, s(1, 2, 3, device="meta")), RuntimeError,
     ["hx", "meta", "cpu"], None),
    ("hx-not-tensor", {}, x(5, 2, 4), lambda m: hx(m, [[0.0] * 3] * 2), TypeError,
     ["hx", "list"], None),
]

LSTM_HX_CASES = [
    ("lstm-hx-tensor", {}, x(5, 2, 4), lambda m: s(1, 2, 3), TypeError,
     ["hx", "tuple (h_0, c_0)", "Tensor", "(1, 2, 3)"], None),
    ("lstm-hx-1-tuple", {}, x(5, 2, 4), lambda m: (s(1, 2, 3),), RuntimeError,
     ["hx", "two tensors", "tuple of 1"], None),
    ("lstm-hx-3-tuple", {}, x(5, 2, 4), lambda m: (s(1, 2, 3),) * 3, RuntimeError,
     ["hx", "two hidden states", "tuple of 3"], "message"),
    ("lstm-hx-none-inside", {}, x(5, 2, 4), lambda m: (s(1, 2, 3), None), TypeError,
     ["hx[1]", "NoneType"], None),
    ("lstm-cx-wrong-size", {}, x(5, 2, 4), lambda m: (s(1, 2, 3), s(1, 2, 4)), RuntimeError,
     ["hidden[1]", "(1, 2, 3)", "[1, 2, 4]", "c_0"], "message"),
    ("lstm-cx-stacked-wrong-layers", {"num_layers": 3}, x(5, 2, 4),
     lambda m: (s(3, 2, 3), s(1, 2, 3)), RuntimeError,
     ["hidden[1]", "(3, 2, 3)", "[1, 2, 3]", "c_0"], "message"),
    ("lstm-cx-dtype", {}, x(5, 2, 4), lambda m: (s(1, 2, 3), s(1, 2, 3, dtype=torch.float64)),
     ValueError, ["hx[1]", "torch.float64"], None),
]

GRU_HX_CASES = [
    ("gru-hx-tuple", {}, x(5, 2, 4), lambda m: (s(1, 2, 3),), TypeError, ["hx", "tuple"], None),
    ("gru-hx-wrong-size", {}, x(5, 2, 4), lambda m: s(1, 2, 4), RuntimeError,
     ["Expected hidden size", "(1, 2, 3)", "[1, 2, 4]"], "message"),
]


def _cases():
    for case in INPUT_CASES:
        for mode in MODES:
            yield pytest.param(mode, *case[1:], id=f"{mode}-{case[0]}")
    for case in LSTM_HX_CASES:
        yield pytest.param("LSTM", *case[1:], id=case[0])
    for case in GRU_HX_CASES:
        yield pytest.param("GRU", *case[1:], id=case[0])


def _forward_error(module, input, hidden):
    with pytest.raises(Exception) as info:
        module(input, hidden)
    return info


@pytest.mark.parametrize("mode, kwargs, input, make_hx, exc, substrings, parity", list(_cases()))
def test_bad_forward_arguments(mode, kwargs, input, make_hx, exc, substrings, parity):
    hidden = make_hx(mode) if make_hx else None
    module = getattr(fastgates, mode)(4, 3, **kwargs)
    got = _forward_error(module, input, hidden)
    assert got.type is exc, f"{got.type.__name__}: {got.value}"
    for sub in substrings:
        assert sub in str(got.value), f"{sub!r} not in {str(got.value)!r}"
    assert mode in str(got.value) or parity == "message" or "RNN" in str(got.value)
    if parity is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = getattr(torch.nn, mode)(4, 3, **kwargs)
        expected = _forward_error(ref, input, hidden)
        assert got.type is expected.type
        if parity == "message":
            assert str(expected.value) in str(got.value)


@pytest.mark.parametrize("mode", MODES)
def test_complex_module_is_rejected(mode):
    module = getattr(fastgates, mode)(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that complex modules are experimental
        module.to(torch.complex64)
    with pytest.raises(TypeError, match="complex64"):
        module(x(5, 2, 4, dtype=torch.complex64))


# ---------------------------------------------------------------------------------------------
# Functional ops: checked arguments.


def _lstm_args(**over):
    a = {"x": x(5, 2, 4), "w_ih": s(12, 4), "w_hh": s(12, 3), "b_ih": s(12), "b_hh": s(12),
         "h0": s(2, 3), "c0": s(2, 3)}
    a.update(over)
    return a


def _gru_args(**over):
    a = {"x": x(5, 2, 4), "w_ih": s(9, 4), "w_hh": s(9, 3), "b_ih": s(9), "b_hh": s(9),
         "h0": s(2, 3)}
    a.update(over)
    return a


FUNCTIONAL_CASES = [
    ("x-not-tensor", {"x": [[[0.0]]]}, TypeError, ["x", "list"]),
    ("x-2d", {"x": x(5, 4)}, ValueError, ["x", "(T, B, I)", "(5, 4)"]),
    ("w_ih-shape", {"w_ih": s(12, 5)}, ValueError, ["w_ih", "(12, 5)", "(12, 4)"]),
    ("w_hh-shape", {"w_hh": s(12, 4)}, ValueError, ["w_hh", "(12, 4)", "(4*H, H)"]),
    ("b_ih-shape", {"b_ih": s(11)}, ValueError, ["b_ih", "(11,)", "(12,)"]),
    ("b_hh-not-tensor", {"b_hh": 0.0}, TypeError, ["b_hh", "float"]),
    ("h0-shape", {"h0": s(3, 3)}, ValueError, ["h0", "(3, 3)", "(2, 3)"]),
    ("c0-dtype", {"c0": s(2, 3, dtype=torch.float64)}, ValueError, ["c0", "torch.float64", "x"]),
    ("float16", {k: v.half() for k, v in _lstm_args().items()}, TypeError, ["x", "torch.float16"]),
    ("w_hh-device", {"w_hh": s(12, 3, device="meta")}, RuntimeError, ["w_hh", "meta", "cpu"]),
]


@pytest.mark.parametrize("over, exc, substrings", [pytest.param(*c[1:], id=c[0]) for c in FUNCTIONAL_CASES])
def test_functional_lstm_bad_arguments(over, exc, substrings):
    with pytest.raises(exc) as info:
        ops.lstm(**_lstm_args(**over))
    for sub in substrings:
        assert sub in str(info.value), f"{sub!r} not in {str(info.value)!r}"
    assert "fastgates.ops.lstm" in str(info.value)


@pytest.mark.parametrize(
    "over, exc, substrings",
    [
        ({"w_hh": s(12, 3)}, ValueError, ["w_hh", "(12, 3)", "(3*H, H)"]),
        ({"b_hh": s(12)}, ValueError, ["b_hh", "(12,)", "(9,)"]),
        ({"h0": s(2, 4)}, ValueError, ["h0", "(2, 4)", "(2, 3)"]),
        ({"x": x(5, 2, 4, dtype=torch.float64)}, ValueError, ["w_ih", "torch.float32", "torch.float64"]),
    ],
)
def test_functional_gru_bad_arguments(over, exc, substrings):
    with pytest.raises(exc) as info:
        ops.gru(**_gru_args(**over))
    for sub in substrings:
        assert sub in str(info.value), f"{sub!r} not in {str(info.value)!r}"


def test_functional_biases_are_optional():
    y, (h, c) = ops.lstm(**_lstm_args(b_ih=None, b_hh=None))
    assert y.shape == (5, 2, 3) and h.shape == c.shape == (2, 3)
    y, h = ops.gru(**_gru_args(b_ih=None))
    assert y.shape == (5, 2, 3) and h.shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# The raw custom ops check nothing themselves: bad shapes must still raise, not crash.


@pytest.mark.parametrize(
    "over",
    [{"h0": s(3, 3)}, {"c0": s(2, 4)}, {"w_hh": s(12, 4)}, {"w_ih": s(12, 5)},
     {"c0": s(2, 3, dtype=torch.float64)}],
    ids=["h0", "c0", "w_hh", "w_ih", "c0-dtype"],
)
def test_raw_lstm_op_bad_shapes_raise(over):
    a = _lstm_args(**over)
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        torch.ops.fastgates.lstm_forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], None,
                                         a["h0"], a["c0"], None, False, True)


@pytest.mark.parametrize("over", [{"h0": s(3, 3)}, {"w_hh": s(9, 4)}, {"b_hh": s(6)}],
                         ids=["h0", "w_hh", "b_hh"])
def test_raw_gru_op_bad_shapes_raise(over):
    a = _gru_args(**over)
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        torch.ops.fastgates.gru_forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                        a["h0"], None, False, True)


def test_raw_backward_op_bad_shapes_raise():
    a = _lstm_args()
    y, h_n, c_n, saved_gates, saved_c, saved_m = torch.ops.fastgates.lstm_forward(
        a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], None, a["h0"], a["c0"], None, False, True)
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        torch.ops.fastgates.lstm_backward(
            a["x"], a["w_ih"], a["w_hh"], None, a["h0"], a["c0"], y, saved_gates[:-1], saved_c, saved_m,
            None, False, torch.ones_like(y), torch.ones_like(h_n), torch.ones_like(c_n), [True] * 7)
    with pytest.raises(ValueError, match="grad_mask"):
        torch.ops.fastgates.lstm_backward(
            a["x"], a["w_ih"], a["w_hh"], None, a["h0"], a["c0"], y, saved_gates, saved_c, saved_m,
            None, False, torch.ones_like(y), torch.ones_like(h_n), torch.ones_like(c_n), [True] * 3)


@pytest.mark.parametrize("batch_sizes", [[2, 3], [2, 0], [2, 2]], ids=["increasing", "zero", "too-few-rows"])
def test_raw_op_bad_batch_sizes_raise(batch_sizes):
    # The binding checks batch_sizes itself: bad ones raise, never index out of bounds.
    a = _lstm_args()
    x = torch.randn(5, a["x"].shape[2], dtype=a["x"].dtype)
    h0, c0 = a["h0"][:1].expand(3, -1).contiguous(), a["c0"][:1].expand(3, -1).contiguous()
    with pytest.raises(ValueError, match="batch_sizes"):
        torch.ops.fastgates.lstm_forward(x, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], None, h0[:2], c0[:2],
                                         torch.tensor(batch_sizes), False, True)


@pytest.mark.parametrize("mode", MODES)
def test_parameters_of_mixed_dtypes_are_rejected(mode):
    module = getattr(fastgates, mode)(4, 3)
    module.weight_hh_l0 = torch.nn.Parameter(module.weight_hh_l0.detach().double())
    with pytest.raises(ValueError, match="weight_hh_l0 has dtype torch.float64"):
        module(x(5, 2, 4))
