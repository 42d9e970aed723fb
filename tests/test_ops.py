"""The torch.ops.fastgates custom ops: opcheck, gradcheck, double backward, torch.compile."""

from __future__ import annotations

import pytest
import torch

import fastgates
from fastgates import ops
from rnn_helpers import MODES, assert_close, make_input, make_pair, outputs_flat

GATES = {"LSTM": 4, "GRU": 3}

# opcheck's internals use torch.jit APIs that torch itself deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),
    pytest.mark.usefixtures("each_cpu_gemm"),  # conftest.py: with both CPU GEMMs
]


def _args(mode, steps=3, batch=2, input_size=3, hidden=4, *, dtype=torch.float64, bias=True,
          requires_grad=True, seed=0):
    """(x, w_ih, w_hh, b_ih, b_hh, h0[, c0]) for ops.lstm / ops.gru, small random values."""
    g = torch.Generator().manual_seed(seed)
    G = GATES[mode]

    def r(*shape, scale=1.0):
        t = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
        return t.requires_grad_(requires_grad)

    scale = hidden ** -0.5
    args = [r(steps, batch, input_size), r(G * hidden, input_size, scale=scale),
            r(G * hidden, hidden, scale=scale),
            r(G * hidden, scale=scale) if bias else None,
            r(G * hidden, scale=scale) if bias else None,
            r(batch, hidden)]
    if mode == "LSTM":
        args.append(r(batch, hidden))
    return args


def _flat_fn(mode):
    if mode == "LSTM":
        return lambda *a: (lambda y, s: (y, *s))(*ops.lstm(*a))
    return lambda *a: ops.gru(*a)


def _forward_op(mode):
    return ops.lstm_forward if mode == "LSTM" else ops.gru_forward


def _detached(args):
    return [a.detach() if isinstance(a, torch.Tensor) else a for a in args]


# Sequence layouts the kernels take: padded, either direction; packed (shrinking batch,
# lengths 4, 3, 2: BATCH_SIZES), either direction; and an LSTM with a projection.
VARIANTS = ["padded", "reverse", "packed", "packed_reverse", "projected", "projected_packed_reverse"]
BATCH_SIZES = torch.tensor([3, 3, 2, 1])  # sequences of lengths 4, 3, 2
PROJ = 2


def _variant_args(mode, variant, *, dtype=torch.float64, bias=True, requires_grad=True, seed=0):
    """The forward op's arguments (without save_for_backward) for one sequence layout:
    LSTM (x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse),
    GRU (x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse)."""
    packed = "packed" in variant
    projected = "projected" in variant
    hidden, input_size = 4, 3
    steps, batch = (BATCH_SIZES.numel(), int(BATCH_SIZES[0])) if packed else (3, 2)
    args = _args(mode, steps, batch, input_size, hidden, dtype=dtype, bias=bias,
                 requires_grad=requires_grad, seed=seed)
    x = args[0]
    if packed:
        x = x.detach().reshape(steps * batch, input_size)[: int(BATCH_SIZES.sum())].clone()
        x.requires_grad_(requires_grad)
    batch_sizes = BATCH_SIZES if packed else None
    reverse = "reverse" in variant
    if mode == "GRU":
        return [x, *args[1:6], batch_sizes, reverse]
    w_ih, w_hh, b_ih, b_hh, h0, c0 = args[1:]
    w_hr = None
    if projected:
        g = torch.Generator().manual_seed(seed + 1)

        def r(*shape):
            return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.5).to(dtype).requires_grad_(
                requires_grad)

        w_hh, w_hr, h0 = r(4 * hidden, PROJ), r(PROJ, hidden), r(batch, PROJ)
    return [x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse]


def _variants(mode):
    return [v for v in VARIANTS if mode == "LSTM" or "projected" not in v]


def _mode_variants():
    return [(m, v) for m in MODES for v in _variants(m)]


# ---------------------------------------------------------------------------------------------
# opcheck


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("mode,variant", _mode_variants())
def test_opcheck_forward(mode, variant, dtype, bias):
    args = _variant_args(mode, variant, dtype=dtype, bias=bias)
    op = _forward_op(mode)
    # With gradients: the registered autograd formula (and so the backward op) is exercised.
    torch.library.opcheck(op, (*args, True))
    # Without saving for backward: 0-sized saved outputs, consistent with the fake.
    torch.library.opcheck(op, (*_detached(args), False))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode,variant", _mode_variants())
def test_opcheck_backward(mode, variant, dtype):
    args = _detached(_variant_args(mode, variant, dtype=dtype))
    with torch.no_grad():
        if mode == "LSTM":
            x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse = args
            y, h_n, c_n, saved_gates, saved_c, saved_m = ops.lstm_forward(*args, True)
            upstream = [torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n)]
            bargs = [x, w_ih, w_hh, w_hr, h0, c0, y, saved_gates, saved_c, saved_m, batch_sizes, reverse,
                     *upstream]
            # [x, w_ih, w_hh, bias, w_hr, h0, c0]; the last without the states' entries (the
            # ops' earlier form, which wants both state gradients)
            masks = [[True] * 7, [False, True, False, True, False, False, True],
                     [True, False, True, False, True, True, False], [False] * 7, [True, False, True, False, True]]
            op = ops.lstm_backward
        else:
            x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse = args
            y, h_n, saved = ops.gru_forward(*args, True)
            bargs = [x, w_ih, w_hh, h0, y, saved, batch_sizes, reverse, torch.randn_like(y),
                     torch.randn_like(h_n)]
            # [x, w_ih, w_hh, b_ih, b_hh, h0]; the last without h0's entry, as for the LSTM
            masks = [[True] * 6, [False, True, False, True, False, False], [True, False, True, False, True, True],
                     [False] * 6, [True, False, True, False, True]]
            op = ops.gru_backward
    projected = "projected" in variant
    for mask in masks:
        torch.library.opcheck(op, (*bargs, mask))
        # The masked-out gradients are 0-sized; the rest (and the states' without an entry) are not.
        outs = op(*bargs, mask)
        wanted = mask + [True] * (len(outs) - len(mask))
        if mode == "LSTM" and not projected:
            wanted[4] = False  # dw_hr: there is no projection
        for out, want in zip(outs, wanted, strict=True):
            assert (out.numel() > 0) == want


@pytest.mark.parametrize("mode,variant", _mode_variants())
def test_gradcheck_sequence_layouts(mode, variant):
    # Every differentiable argument of the forward op, for each layout (packed, reverse,
    # projection), against finite differences; all outputs reach the loss.
    args = _variant_args(mode, variant)
    op = _forward_op(mode)
    tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]

    def fn(*inputs):
        full = list(args)
        for i, t in zip(tensors, inputs, strict=True):
            full[i] = t
        outs = op(*full, True)
        return outs[:3] if mode == "LSTM" else outs[:2]

    assert torch.autograd.gradcheck(fn, [args[i] for i in tensors], eps=1e-6, atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# gradcheck / gradgradcheck


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_every_input(mode, bias):
    # x, w_ih, w_hh, b_ih, b_hh, h0 (and c0): every argument that is a tensor.
    args = [a for a in _args(mode, steps=4, batch=2, input_size=3, hidden=3, bias=bias)]
    fn = _flat_fn(mode)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_each_input_alone(mode):
    # One input requiring grad at a time: the gradient mask path of the backward op.
    args = _detached(_args(mode, steps=3, batch=2, input_size=2, hidden=3))
    fn = _flat_fn(mode)
    for i in range(len(args)):
        a = list(args)
        a[i] = a[i].clone().requires_grad_(True)
        assert torch.autograd.gradcheck(fn, a, eps=1e-6, atol=1e-7, rtol=1e-5), f"input {i}"


@pytest.mark.parametrize("mode", MODES)
def test_double_backward_raises_clear_error(mode):
    args = _args(mode)
    outs = _flat_fn(mode)(*args)
    loss = sum((o ** 2).sum() for o in outs)
    grads = torch.autograd.grad(loss, [args[0], args[1]], create_graph=True)
    with pytest.raises(RuntimeError, match="fastgates does not support double backward"):
        grads[0].sum().backward()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.gradgradcheck(_flat_fn(mode), _args(mode, steps=2, batch=1, hidden=2))


@pytest.mark.parametrize("mode", MODES)
def test_double_backward_with_frozen_weights_still_raises(mode):
    # Only x requires grad: the second derivative must still not silently come out as zero.
    args = _detached(_args(mode))
    args[0].requires_grad_(True)
    (dx,) = torch.autograd.grad(_flat_fn(mode)(*args)[0].pow(2).sum(), args[0], create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(dx.sum(), args[0])


@pytest.mark.parametrize("mode", MODES)
def test_backward_without_saved_tensors_raises(mode):
    args = _variant_args(mode, "padded")
    outs = _forward_op(mode)(*args, False)
    with pytest.raises(RuntimeError, match="save_for_backward=False"):
        outs[0].sum().backward()


@pytest.mark.parametrize("mode,variant", _mode_variants())
def test_outputs_do_not_alias(mode, variant):
    args = _variant_args(mode, variant, requires_grad=False)
    outs = _forward_op(mode)(*args, True)
    ptrs = [o.untyped_storage().data_ptr() for o in outs if o.numel()]
    ptrs += [a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)]
    assert len(set(ptrs)) == len(ptrs)


@pytest.mark.parametrize("mode", MODES)
def test_functional_matches_torch_nn(mode):
    ours, ref = make_pair(mode, 3, 4)
    x, hx = make_input(mode, 5, 2, 3, 4, dtype=torch.float64)
    states = [s[0] for s in (hx if mode == "LSTM" else (hx,))]
    params = [ours.weight_ih_l0, ours.weight_hh_l0, ours.bias_ih_l0, ours.bias_hh_l0]
    fn = ops.lstm if mode == "LSTM" else ops.gru
    y, state = fn(x, *params, *states)
    ref_outs = outputs_flat(mode, ref(x, hx))
    got = [y, *([s.unsqueeze(0) for s in state] if mode == "LSTM" else [state.unsqueeze(0)])]
    for a, b in zip(got, ref_outs, strict=True):
        assert_close(a, b, f"fastgates.ops.{mode.lower()}")


@pytest.mark.parametrize("mode", MODES)
def test_functional_zero_steps_returns_initial_state(mode):
    # The layers reject 0 steps like torch.nn; the functional form defines it.
    args = _args(mode, steps=0)
    outs = _flat_fn(mode)(*args)
    assert outs[0].shape == (0, 2, 4)
    for out, state in zip(outs[1:], args[5:], strict=True):
        assert torch.equal(out, state)
    sum(o.sum() for o in outs).backward()
    for state in args[5:]:
        assert torch.equal(state.grad, torch.ones_like(state))
    assert torch.equal(args[0].grad, torch.zeros_like(args[0]))
    assert torch.equal(args[2].grad, torch.zeros_like(args[2]))


# ---------------------------------------------------------------------------------------------
# torch.compile


def _state_layers(kw):
    return kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)


def _compiled_matches_eager(mode, backend, *, steps, batch, kw, with_hx=True, unbatched=False):
    torch._dynamo.reset()
    ours, _ = make_pair(mode, 5, 7, dtype=torch.float32, **kw)
    x, hx = make_input(mode, steps, batch, 5, 7, dtype=torch.float32, unbatched=unbatched,
                       batch_first=kw.get("batch_first", False), with_hx=with_hx,
                       layers=_state_layers(kw))

    def f(x, hx):
        y, state = ours(x, hx)
        state = list(state) if mode == "LSTM" else [state]
        return [torch.tanh(y) * 2, *(s + 1 for s in state)]

    compiled = torch.compile(f, fullgraph=True, backend=backend)
    results = []
    for fn in (compiled, f):
        xl = x.clone().requires_grad_(True)
        outs = fn(xl, hx)
        loss = sum((o * o).sum() for o in outs)
        grads = torch.autograd.grad(loss, [xl, *ours.parameters()])
        results.append([o.detach() for o in outs] + list(grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    return compiled, f, x, hx


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_compile_inductor_fullgraph_matches_eager(mode):
    compiled, f, x, hx = _compiled_matches_eager(mode, "inductor", steps=6, batch=3,
                                                 kw={"batch_first": True})
    with torch.no_grad():
        for a, b in zip(compiled(x, hx), f(x, hx), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kw, with_hx, unbatched",
    [({}, True, False), ({"bias": False}, False, False), ({"batch_first": True}, True, True),
     ({"num_layers": 2, "bidirectional": True}, True, False)],
    ids=["default", "no_bias-hx_none", "unbatched", "stacked-bidirectional"],
)
@pytest.mark.parametrize("mode", MODES)
def test_compile_aot_eager_fullgraph_matches_eager(mode, kw, with_hx, unbatched):
    compiled, f, x, hx = _compiled_matches_eager(mode, "aot_eager", steps=4, batch=2, kw=kw,
                                                 with_hx=with_hx, unbatched=unbatched)
    # Another sequence length: recompiles (or runs dynamic) and still matches.
    x2, hx2 = make_input(mode, 9, 2, 5, 7, dtype=torch.float32, unbatched=unbatched,
                         batch_first=kw.get("batch_first", False), with_hx=with_hx,
                         layers=_state_layers(kw))
    for a, b in zip(compiled(x2, hx2), f(x2, hx2), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ops_are_registered():
    for name in ("lstm_forward", "lstm_backward", "gru_forward", "gru_backward"):
        assert hasattr(torch.ops.fastgates, name)
    assert fastgates.ops.lstm_forward._qualname == "fastgates::lstm_forward"


# ---------------------------------------------------------------------------------------------
# Eager inference runs the ops' implementations without the dispatcher (functional.py); every
# context that must see the op still gets it.


class _RecordOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def _op_calls(monkeypatch, module, name):
    """Counts the calls of the custom op ``name`` that go through ``module``'s reference to it."""
    op = getattr(module, name)
    calls = []

    def counted(*args):
        calls.append(args)
        return op(*args)

    monkeypatch.setattr(module, name, counted)
    return calls


def _forward_op_calls(monkeypatch, mode):
    """Counts the calls that go through the forward op from the functional layer."""
    from fastgates.ops import functional

    return _op_calls(monkeypatch, functional, f"{mode.lower()}_forward")


def _run_functional(mode, args):
    """functional._lstm / _gru on _variant_args' arguments: the outputs as a flat list."""
    from fastgates.ops import functional

    x, w_ih, w_hh, b_ih, b_hh, *rest = args
    if mode == "LSTM":
        w_hr, h0, c0, batch_sizes, reverse = rest
        y, (h_n, c_n) = functional._lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, batch_sizes, reverse)
        return [y, h_n, c_n]
    h0, batch_sizes, reverse = rest
    y, h_n = functional._gru(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse)
    return [y, h_n]


@pytest.mark.parametrize("mode,variant", _mode_variants())
def test_eager_inference_skips_dispatcher_and_matches_op(monkeypatch, mode, variant):
    args = _variant_args(mode, variant, dtype=torch.float32, requires_grad=False)
    through_op = _forward_op(mode)(*args, False)
    calls = _forward_op_calls(monkeypatch, mode)
    module, _ = make_pair(mode, 3, 4, dtype=torch.float32)
    direct = _run_functional(mode, args)
    assert calls == []
    for a, b in zip(direct, through_op, strict=False):
        assert torch.equal(a, b)
    with torch.no_grad():
        module(make_input(mode, 3, 2, 3, 4, dtype=torch.float32)[0])
    assert calls == []


@pytest.mark.parametrize("mode,variant", _mode_variants())
def test_eager_training_skips_the_op_and_matches_it(monkeypatch, mode, variant):
    """A plain eager call that autograd records runs the implementation inside the op's own
    autograd formula (_common.eager_autograd), not the op: same outputs and gradients, bit for
    bit, as through the op."""
    from fastgates.ops import functional

    results = []
    for through_op in (False, True):
        args = _variant_args(mode, variant, dtype=torch.float32)
        calls = _forward_op_calls(monkeypatch, mode)
        if through_op:
            monkeypatch.setattr(functional, "_eager", lambda *a: None)
        outs = _run_functional(mode, args)
        inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs)
        results.append((outs, torch.autograd.grad(loss, inputs)))
        assert len(calls) == (1 if through_op else 0)
    (outs, grads), (op_outs, op_grads) = results
    assert len(grads) == len(op_grads) >= 5
    for a, b in zip(outs + list(grads), op_outs + list(op_grads), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_layers_train_without_the_op_in_eager_and_with_it_when_watched(monkeypatch, mode):
    calls = _forward_op_calls(monkeypatch, mode)
    module, _ = make_pair(mode, 3, 4, dtype=torch.float32)
    x, _ = make_input(mode, 3, 2, 3, 4, dtype=torch.float32)
    module(x)[0].sum().backward()
    assert calls == []
    assert module.weight_hh_l0.grad is not None
    with _RecordOps() as recorder:
        module(x)[0].sum().backward()
    assert f"fastgates.{mode.lower()}_forward.default" in recorder.names
    assert len(calls) == 1


@pytest.mark.parametrize("mode", MODES)
def test_layers_double_backward_raises_clear_error(mode):
    module, _ = make_pair(mode, 3, 4, dtype=torch.float64)
    x, _ = make_input(mode, 3, 2, 3, 4, dtype=torch.float64)
    x.requires_grad_()
    (dx,) = torch.autograd.grad(module(x)[0].pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="fastgates does not support double backward"):
        dx.sum().backward()


@pytest.mark.parametrize("mode", MODES)
def test_dispatch_modes_and_profiler_see_the_op(mode):
    module, _ = make_pair(mode, 3, 4, dtype=torch.float32)
    x, hx = make_input(mode, 3, 2, 3, 4, dtype=torch.float32)
    name = f"fastgates.{mode.lower()}_forward.default"
    with torch.no_grad():
        expected = outputs_flat(mode, module(x, hx))
        with _RecordOps() as recorder:
            got = outputs_flat(mode, module(x, hx))
        assert name in recorder.names
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b)
        with torch.profiler.profile() as prof:
            module(x, hx)
    assert f"fastgates::{mode.lower()}_forward" in {e.name for e in prof.events()}


@pytest.mark.parametrize("mode", MODES)
def test_fake_and_meta_tensors_take_the_op(mode):
    from torch._subclasses.fake_tensor import FakeTensorMode

    module, _ = make_pair(mode, 3, 4, dtype=torch.float32)
    x, _ = make_input(mode, 5, 2, 3, 4, dtype=torch.float32)
    with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as fake:
        y = module(fake.from_tensor(x))[0]
    assert y.shape == (5, 2, 4)
    meta = getattr(fastgates, mode)(3, 4, device="meta")
    with torch.no_grad():
        y = meta(torch.empty(5, 2, 3, device="meta"))[0]
    assert y.shape == (5, 2, 4) and y.device.type == "meta"


@pytest.mark.parametrize("mode", MODES)
def test_gradients_survive_later_backward_calls(mode):
    """The backward ops keep their gate gradients in a per-thread buffer they reuse
    (_backend.gradient_scratch); no gradient they return may live in it: those of a first
    backward still match torch.nn after backward calls of other shapes."""
    ours, ref = make_pair(mode, 5, 6, dtype=torch.float64)
    expected, kept = [], []
    for steps, batch in [(7, 3), (2, 1), (9, 4)]:
        x, hx = make_input(mode, steps, batch, 5, 6, dtype=torch.float64)
        x.requires_grad_()
        grads = []
        for module in (ours, ref):
            module.zero_grad()
            y, _ = module(x, hx)
            dx, *dparams = torch.autograd.grad((y * y).sum(), [x, *module.parameters()])
            grads.append([dx, *dparams])
        kept.append(grads[0])
        expected.append([g.clone() for g in grads[1]])
    for ours_grads, ref_grads in zip(kept, expected, strict=True):
        for a, b in zip(ours_grads, ref_grads, strict=True):
            assert_close(a, b, "gradient")


def test_gradient_scratch_views_follow_their_buffer():
    """gradient_scratch hands out the same views again for the same dtype and shapes, and new
    ones, inside the grown buffer, once a larger request has replaced the buffer."""
    from fastgates import _backend

    def inside_buffer_and_apart(arrays, dtype, shapes):
        buffer = _backend._workspaces.gradients
        start, end = buffer.data_ptr(), buffer.data_ptr() + buffer.numel()
        spans = sorted((t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in arrays)
        assert [t.dtype for t in arrays] == [dtype] * len(shapes)
        assert [tuple(t.shape) for t in arrays] == list(shapes)
        assert all(start <= lo and hi <= end for lo, hi in spans)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))

    like = torch.empty(0, dtype=torch.float64)
    shapes = [(2, 3), (4,)]
    first = _backend.gradient_scratch(like, *shapes)
    again = _backend.gradient_scratch(like, *shapes)
    assert [t.data_ptr() for t in again] == [t.data_ptr() for t in first]
    inside_buffer_and_apart(again, torch.float64, shapes)
    rows = _backend._workspaces.gradients.numel()  # bytes: (rows, 2) float64 needs 16 times more
    inside_buffer_and_apart(_backend.gradient_scratch(like, (rows, 2)), torch.float64, [(rows, 2)])
    inside_buffer_and_apart(_backend.gradient_scratch(like, *shapes), torch.float64, shapes)
    inside_buffer_and_apart(_backend.gradient_scratch(like.float(), *shapes), torch.float32, shapes)


@pytest.mark.parametrize("mode", MODES)
def test_forward_mode_ad_raises_instead_of_dropping_tangents(mode):
    import torch.autograd.forward_ad as fwAD

    module, _ = make_pair(mode, 3, 4, dtype=torch.float64)
    x, _ = make_input(mode, 3, 2, 3, 4, dtype=torch.float64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        with pytest.raises(NotImplementedError, match="forward-mode AD"):
            module(dual)
        y, _ = module(x)  # no tangent anywhere: runs
    assert y.shape == (3, 2, 4)


@pytest.mark.parametrize("mode", MODES)
def test_eager_backward_skips_the_backward_ops_dispatcher_unless_watched(monkeypatch, mode):
    import importlib

    name = f"{mode.lower()}_backward"
    calls = _op_calls(monkeypatch, importlib.import_module(f"fastgates.ops.{mode.lower()}"), name)
    ours, ref = make_pair(mode, 3, 4, dtype=torch.float64)
    x, hx = make_input(mode, 3, 2, 3, 4, dtype=torch.float64)
    grads = []
    for module in (ours, ref):
        y, _ = module(x, hx)
        grads.append(torch.autograd.grad(y.sum(), list(module.parameters())))
    assert calls == []
    for a, b in zip(*grads, strict=True):
        assert_close(a, b, "gradient")
    y, _ = ours(x, hx)
    with _RecordOps() as recorder:
        torch.autograd.grad(y.sum(), list(ours.parameters()))
    assert f"fastgates.{name}.default" in recorder.names
    assert len(calls) == 1
