"""fastgates.LSTM / fastgates.GRU survive copying and saving (deepcopy, pickle, torch.save of
the module and of its state dict), and work under torch.export and torch.compile."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import fastgates

CONFIGS = [
    pytest.param({}, id="default"),
    pytest.param({"num_layers": 2, "bidirectional": True, "batch_first": True},
                 id="L2-bidir-batch_first"),
]
LAYERS = [pytest.param(fastgates.LSTM, id="LSTM"), pytest.param(fastgates.GRU, id="GRU")]
INPUT, HIDDEN, STEPS, BATCH = 5, 7, 6, 3


def _make(cls, opts):
    torch.manual_seed(0)
    return cls(INPUT, HIDDEN, **opts)


def _input(opts):
    g = torch.Generator().manual_seed(1)
    shape = (BATCH, STEPS, INPUT) if opts.get("batch_first") else (STEPS, BATCH, INPUT)
    return torch.randn(shape, generator=g)


def _flat(out):
    """(output, h_n) or (output, (h_n, c_n)) as a flat list of tensors."""
    y, state = out
    return [y, *(state if isinstance(state, tuple) else (state,))]


def _assert_same_outputs(a, b, x):
    with torch.no_grad():
        for ta, tb in zip(_flat(a(x)), _flat(b(x)), strict=True):
            assert torch.equal(ta, tb)


def _via_deepcopy(model):
    return copy.deepcopy(model)


def _via_pickle(model):
    return pickle.loads(pickle.dumps(model))


def _via_torch_save(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _via_state_dict(model):
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = type(model)(model.input_size, model.hidden_size, num_layers=model.num_layers,
                        bias=model.bias, batch_first=model.batch_first,
                        bidirectional=model.bidirectional)
    with torch.no_grad():  # make sure the weights really come from the state dict
        for p in fresh.parameters():
            p.fill_(0.5)
    fresh.load_state_dict(state)
    return fresh


ROUND_TRIPS = [
    pytest.param(_via_deepcopy, id="deepcopy"),
    pytest.param(_via_pickle, id="pickle"),
    pytest.param(_via_torch_save, id="torch_save"),
    pytest.param(_via_state_dict, id="state_dict"),
]


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("opts", CONFIGS)
@pytest.mark.parametrize("cls", LAYERS)
def test_round_trip(cls, opts, round_trip):
    model = _make(cls, opts)
    x = _input(opts)
    restored = round_trip(model)
    assert type(restored) is cls
    assert repr(restored) == repr(model)
    assert [n for n, _ in restored.named_parameters()] == [n for n, _ in model.named_parameters()]
    for (name, p), q in zip(model.named_parameters(), restored.parameters(), strict=True):
        assert torch.equal(p, q), name
        assert p.data_ptr() != q.data_ptr(), name
    _assert_same_outputs(model, restored, x)

    # The restored module is an independent copy: changing it leaves the original alone.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference_out = [t.clone() for t in _flat(model(x))]
    with torch.no_grad():
        for p in restored.parameters():
            p.add_(1.0)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    with torch.no_grad():
        for ta, tb in zip(_flat(model(x)), reference_out, strict=True):
            assert torch.equal(ta, tb)
        assert not torch.equal(_flat(restored(x))[0], reference_out[0])

    # Training still works on the restored module.
    restored.zero_grad()
    _flat(restored(x))[0].sum().backward()
    assert all(p.grad is not None for p in restored.parameters())


class _Wrapper(nn.Module):
    def __init__(self, cls, **opts):
        super().__init__()
        self.rnn = cls(INPUT, HIDDEN, **opts)
        self.head = nn.Linear(HIDDEN * (2 if opts.get("bidirectional") else 1), 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


@pytest.mark.parametrize("opts", CONFIGS)
@pytest.mark.parametrize("cls", LAYERS)
def test_export(cls, opts):
    torch.manual_seed(0)
    model = _Wrapper(cls, **opts).eval()
    x = _input(opts)
    ep = torch.export.export(model, (x,))
    assert "fastgates" in str(ep.graph)
    with torch.no_grad():
        expected = model(x)
        got = ep.module()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # Another input of the same shape: the exported program is not just a constant.
    x2 = _input(opts) * 0.5
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x2), model(x2), rtol=1e-5, atol=1e-6)


def test_compile_inductor_stacked_bidirectional_lstm():
    torch._dynamo.reset()
    opts = {"num_layers": 2, "bidirectional": True}
    torch.manual_seed(0)
    eager = _Wrapper(fastgates.LSTM, **opts)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend="inductor")
    x = _input(opts)

    out_eager = eager(x)
    out_eager.square().mean().backward()
    out_compiled = compiled(x)
    out_compiled.square().mean().backward()

    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-5, atol=1e-6)
    names = [n for n, _ in eager.named_parameters()]
    assert names == [n for n, _ in compiled_model.named_parameters()]
    assert len(names) == 2 * 2 * 4 + 2
    for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
