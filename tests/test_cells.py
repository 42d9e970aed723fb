"""fastgates.LSTMCell / fastgates.GRUCell against torch.nn.LSTMCell / torch.nn.GRUCell with
identical weights: outputs and every gradient, construction, state dicts, errors, compile."""

from __future__ import annotations

import pytest
import torch

import fastgates
from rnn_helpers import DTYPES, Halve, assert_close, assert_gradients_with_halved

CELLS = ("LSTMCell", "GRUCell")
BATCH, INPUT, HIDDEN = 3, 4, 5


def _pair(mode, *, dtype=torch.float64, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = getattr(torch.nn, mode)(INPUT, HIDDEN, bias=bias, dtype=dtype)
    ours = getattr(fastgates, mode)(INPUT, HIDDEN, bias=bias, dtype=dtype)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def _inputs(mode, dtype, *, unbatched=False, with_hx=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    lead = () if unbatched else (BATCH,)
    x = torch.randn(*lead, INPUT, generator=g, dtype=dtype)
    if not with_hx:
        return x, None
    states = [torch.randn(*lead, HIDDEN, generator=g, dtype=dtype)
              for _ in range(2 if mode == "LSTMCell" else 1)]
    return x, (tuple(states) if mode == "LSTMCell" else states[0])


def _run(mode, module, x, hx):
    """Outputs and the gradients of [input, *hx, *parameters] of a random linear functional."""
    x = x.detach().clone().requires_grad_(True)
    hx_list = [] if hx is None else (list(hx) if mode == "LSTMCell" else [hx])
    hx_list = [t.detach().clone().requires_grad_(True) for t in hx_list]
    arg = None if hx is None else (tuple(hx_list) if mode == "LSTMCell" else hx_list[0])
    out = module(x, arg)
    outs = list(out) if mode == "LSTMCell" else [out]
    g = torch.Generator().manual_seed(2)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, [x, *hx_list, *params])
    return [o.detach() for o in outs], list(grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", CELLS)
@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({}, id="batched"),
        pytest.param({"unbatched": True}, id="unbatched"),
        pytest.param({"with_hx": False}, id="hx_none"),
        pytest.param({"unbatched": True, "with_hx": False}, id="unbatched-hx_none"),
        pytest.param({"bias": False}, id="no_bias"),
        pytest.param({"bias": False, "unbatched": True}, id="no_bias-unbatched"),
    ],
)
def test_matches_torch(mode, dtype, kw):
    kw = dict(kw)
    bias = kw.pop("bias", True)
    ours, ref = _pair(mode, dtype=dtype, bias=bias)
    x, hx = _inputs(mode, dtype, **kw)
    out_ours, grads_ours = _run(mode, ours, x, hx)
    out_ref, grads_ref = _run(mode, ref, x, hx)
    names = ["h'", "c'"] if mode == "LSTMCell" else ["h'"]
    for name, a, b in zip(names, out_ours, out_ref, strict=True):
        assert_close(a, b, name)
    grad_names = ["input"]
    if hx is not None:
        grad_names += ["h_0", "c_0"] if mode == "LSTMCell" else ["h_0"]
    grad_names += [n for n, _ in ref.named_parameters()]
    assert len(grad_names) == len(grads_ours) == len(grads_ref)
    for name, a, b in zip(grad_names, grads_ours, grads_ref, strict=True):
        assert_close(a, b, f"grad of {name}")


@pytest.mark.parametrize("mode", CELLS)
def test_several_steps_match_torch(mode):
    ours, ref = _pair(mode)
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(4, BATCH, INPUT, generator=g, dtype=torch.float64)
    h_ours = h_ref = None
    for x in xs:
        h_ours, h_ref = ours(x, h_ours), ref(x, h_ref)
    for a, b in zip(h_ours if mode == "LSTMCell" else [h_ours],
                    h_ref if mode == "LSTMCell" else [h_ref], strict=True):
        assert_close(a, b, "state after 4 steps")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", CELLS)
def test_construction_matches_torch(mode, bias):
    torch.manual_seed(7)
    ref = getattr(torch.nn, mode)(INPUT, HIDDEN, bias, dtype=torch.float64)
    torch.manual_seed(7)
    ours = getattr(fastgates, mode)(INPUT, HIDDEN, bias, dtype=torch.float64)
    named_ref = list(ref.named_parameters())
    named_ours = list(ours.named_parameters())
    assert [n for n, _ in named_ours] == [n for n, _ in named_ref]
    for (name, a), (_, b) in zip(named_ours, named_ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert torch.equal(a, b), f"{name}: different initial values"
    assert repr(ours) == repr(ref)
    assert ours.input_size == INPUT and ours.hidden_size == HIDDEN and ours.bias is bias
    if not bias:
        assert ours.bias_ih is None and ours.bias_hh is None


@pytest.mark.parametrize("mode", CELLS)
def test_state_dict_both_ways(mode):
    ours, ref = _pair(mode, seed=0)
    other_ref = getattr(torch.nn, mode)(INPUT, HIDDEN, dtype=torch.float64)
    other_ref.load_state_dict(ours.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(other_ref.state_dict()[key], value), key


@pytest.mark.parametrize("mode", CELLS)
def test_constructor_errors_match_torch(mode):
    for args in [(4.0, 3), (4, -1)]:
        with pytest.raises(Exception) as ref_error:
            getattr(torch.nn, mode)(*args)
        with pytest.raises(type(ref_error.value)):
            getattr(fastgates, mode)(*args)


def _bad_inputs(mode):
    x = torch.randn(BATCH, INPUT)
    h = torch.randn(BATCH, HIDDEN)
    pair = mode == "LSTMCell"

    def hx(*states):
        return tuple(states) if pair else states[0]

    return {
        "input_size": (torch.randn(BATCH, INPUT + 1), None),
        "input_3d": (torch.randn(2, BATCH, INPUT), None),
        "input_0d": (torch.tensor(1.0), None),
        "hx_hidden_size": (x, hx(torch.randn(BATCH, HIDDEN + 1), h)),
        "hx_batch": (x, hx(torch.randn(BATCH + 1, HIDDEN), h)),
        "hx_3d": (x, hx(torch.randn(1, BATCH, HIDDEN), h)),
        "hx_unbatched_for_batched": (x, hx(torch.randn(HIDDEN), torch.randn(HIDDEN))),
        "hx_batched_for_unbatched": (torch.randn(INPUT), hx(h, h)),
        "dtype": (x.double(), None),
    }


@pytest.mark.parametrize("case", list(_bad_inputs("GRUCell")))
@pytest.mark.parametrize("mode", CELLS)
def test_forward_errors_match_torch(mode, case):
    ours, ref = _pair(mode, dtype=torch.float32)
    x, hx = _bad_inputs(mode)[case]
    with pytest.raises(Exception) as ref_error:
        ref(x, hx)
    with pytest.raises(type(ref_error.value)):
        ours(x, hx)


@pytest.mark.parametrize("name", ["weight_hh", "bias_hh"])
@pytest.mark.parametrize("mode", CELLS)
def test_parameter_of_another_dtype_is_named(mode, name):
    """One parameter converted on its own: the error names it (the checks' fast path for
    consistent arguments must not let it through), with torch.nn's exception type."""
    ours, ref = _pair(mode, dtype=torch.float32)
    for module in (ours, ref):
        setattr(module, name, torch.nn.Parameter(getattr(module, name).detach().double()))
    x, hx = _inputs(mode, torch.float32)
    with pytest.raises(Exception) as ref_error:
        ref(x, hx)
    with pytest.raises(type(ref_error.value), match=name):
        ours(x, hx)


@pytest.mark.parametrize("mode", CELLS)
def test_parametrized_weight(mode):
    """A weight under torch.nn.utils.parametrize is a property, not a registered parameter:
    the cell reads its current value at every call and the gradient reaches the original."""
    ours, ref = _pair(mode)
    torch.nn.utils.parametrize.register_parametrization(ours, "weight_hh", Halve())
    with torch.no_grad():
        ref.weight_hh.mul_(0.5)
    x, hx = _inputs(mode, torch.float64)
    out_ours, grads_ours = _run(mode, ours, x, hx)
    out_ref, grads_ref = _run(mode, ref, x, hx)
    for a, b in zip(out_ours, out_ref, strict=True):
        assert_close(a, b, "output with a parametrized weight_hh")
    assert_gradients_with_halved(ours, ref, grads_ours, grads_ref, "weight_hh")


def test_lstm_cell_needs_two_states():
    ours, ref = _pair("LSTMCell", dtype=torch.float32)
    x, h = torch.randn(BATCH, INPUT), torch.randn(BATCH, HIDDEN)
    for hx in [(h,), (h, h, h)]:
        with pytest.raises(Exception) as ref_error:
            ref(x, hx)
        with pytest.raises(type(ref_error.value)):
            ours(x, hx)


@pytest.mark.parametrize("mode", CELLS)
def test_compile_matches_eager(mode):
    ours, _ = _pair(mode, dtype=torch.float32)
    x, hx = _inputs(mode, torch.float32)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    expected = ours(x, hx)
    got = compiled(x, hx)
    for a, b in zip(got if mode == "LSTMCell" else [got],
                    expected if mode == "LSTMCell" else [expected], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    out = compiled(x.clone().requires_grad_(True), hx)
    (out[0] if mode == "LSTMCell" else out).sum().backward()
    assert ours.weight_hh.grad is not None


# -- the cells' own training step (ops/_cell_step.py) against the sequence ops -------------------

# (batch, input, hidden): tiny; weight gradients of 1 MiB and more (reused blocks, products that
# read the weights in place); a batch beyond the short-call rows (packed weights).
STEP_SIZES = [(3, 4, 5), (2, 300, 256), (40, 33, 70)]
REQUIRES_GRAD = {
    "all": (True, True, True),
    "parameters": (False, False, True),
    "input_and_states": (True, True, False),
    "states": (False, True, False),
}


def _step_gradients(mode, module, x, states, requires, outputs, through_op):
    """Outputs and gradients of one cell step (through the module, or through the sequence op
    ``fastgates.ops.lstm/gru`` with T = 1 and the module's weights), for a linear functional of
    the outputs chosen by ``outputs`` (indices); inputs that require grad per ``requires``."""
    x_grad, states_grad, params_grad = requires
    x = x.detach().clone().requires_grad_(x_grad)
    states = [s.detach().clone().requires_grad_(states_grad) for s in states]
    params = list(module.parameters())
    for p in params:
        p.requires_grad_(params_grad)
    if through_op:
        op = fastgates.ops.lstm if mode == "LSTMCell" else fastgates.ops.gru
        _, finals = op(x.unsqueeze(0), *params, *states)
        outs = list(finals) if mode == "LSTMCell" else [finals]
    else:
        out = module(x, tuple(states) if mode == "LSTMCell" else states[0])
        outs = list(out) if mode == "LSTMCell" else [out]
    g = torch.Generator().manual_seed(5)
    loss = sum((outs[i] * torch.randn(outs[i].shape, generator=g, dtype=x.dtype)).sum() for i in outputs)
    wrt = [t for t in [x, *states, *params] if t.requires_grad]
    return [o.detach() for o in outs], list(torch.autograd.grad(loss, wrt))


@pytest.mark.parametrize("requires", list(REQUIRES_GRAD))
@pytest.mark.parametrize("size", STEP_SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", CELLS)
def test_training_step_equals_sequence_op(mode, dtype, size, requires):
    """A cell's training step runs its own autograd Function (ops/_cell_step.py): outputs and
    every gradient bit for bit those of the sequence op with T = 1."""
    batch, input_size, hidden = size
    torch.manual_seed(0)
    module = getattr(fastgates, mode)(input_size, hidden, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, input_size, generator=g, dtype=dtype)
    states = [torch.randn(batch, hidden, generator=g, dtype=dtype) for _ in range(2 if mode == "LSTMCell" else 1)]
    for outputs in ([0, 1], [0], [1]) if mode == "LSTMCell" else ([0],):
        args = (mode, module, x, states, REQUIRES_GRAD[requires], outputs)
        out_step, grads_step = _step_gradients(*args, through_op=False)
        out_op, grads_op = _step_gradients(*args, through_op=True)
        assert len(grads_step) == len(grads_op) > 0
        for a, b in zip(out_step + grads_step, out_op + grads_op, strict=True):
            assert torch.equal(a, b), f"outputs {outputs}: differs from the sequence op by {(a - b).abs().max()}"


@pytest.mark.parametrize("mode", CELLS)
def test_training_step_gradcheck(mode):
    """Gradients of the input, the states and every parameter of one step (float64)."""
    module, _ = _pair(mode)
    x, hx = _inputs(mode, torch.float64)
    states = list(hx) if mode == "LSTMCell" else [hx]
    count = len(states)
    names = [n for n, _ in module.named_parameters()]

    def step(x, *tensors):
        hx = tuple(tensors[:count]) if mode == "LSTMCell" else tensors[0]
        return torch.func.functional_call(module, dict(zip(names, tensors[count:], strict=True)), (x, hx))

    inputs = [t.detach().clone().requires_grad_(True) for t in [x, *states, *module.parameters()]]
    assert torch.autograd.gradcheck(step, inputs)


@pytest.mark.parametrize("mode", CELLS)
def test_training_step_bias_gradients_are_separate_tensors(mode):
    """b_ih and b_hh get equal gradients in separate tensors: accumulating a second step into one
    .grad must not change the other."""
    module, _ = _pair(mode)
    x, hx = _inputs(mode, torch.float64)
    for _ in range(2):
        out = module(x, hx)
        (out[0] if mode == "LSTMCell" else out).sum().backward()
    assert module.bias_ih.grad.data_ptr() != module.bias_hh.grad.data_ptr()
    if mode == "LSTMCell":
        assert torch.equal(module.bias_ih.grad, module.bias_hh.grad)
    module.bias_ih.grad.zero_()
    assert module.bias_hh.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", CELLS)
def test_training_step_refuses_double_backward(mode):
    """With create_graph the step's first gradient is the backward op's (the same values), and
    differentiating it again raises instead of treating the saved activations as constants."""
    module, _ = _pair(mode)
    x, hx = _inputs(mode, torch.float64)
    x.requires_grad_(True)

    def first_gradient(create_graph):
        out = module(x, hx)
        h = out[0] if mode == "LSTMCell" else out
        return torch.autograd.grad(h.pow(2).sum(), x, create_graph=create_graph)[0]

    plain, graphed = first_gradient(False), first_gradient(True)
    assert torch.equal(plain, graphed)
    assert graphed.requires_grad
    with pytest.raises(RuntimeError, match="fastgates does not support double backward"):
        graphed.sum().backward()


@pytest.mark.parametrize("mode", CELLS)
def test_training_step_outputs_may_change_in_place(mode):
    """As with torch.nn's cells, the returned states may be changed in place before the backward
    (masking a state between steps): the step keeps no output for its backward."""
    ours, ref = _pair(mode)
    x, hx = _inputs(mode, torch.float64)
    mask = (torch.arange(BATCH) % 2).to(torch.float64).unsqueeze(1)
    grads = []
    for module in (ours, ref):
        module.zero_grad()
        out = module(x, hx)
        outs = list(out) if mode == "LSTMCell" else [out]
        for o in outs:
            o.mul_(mask)
        out = module(x, tuple(outs) if mode == "LSTMCell" else outs[0])
        (out[0] if mode == "LSTMCell" else out).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in module.parameters()])
    for name, a, b in zip([n for n, _ in ref.named_parameters()], *grads, strict=True):
        assert_close(a, b, f"grad of {name} through masked states")
