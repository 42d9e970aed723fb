"""fastgates.from_torch, .to_torch() and fastgates.convert: types, weights, device / dtype /
training mode, outputs equal to the torch.nn modules', and what is left unconverted."""

from __future__ import annotations

import warnings

import pytest
import torch

import fastgates
from rnn_helpers import assert_close, assert_same_parameters

INPUT, HIDDEN = 4, 6

CASES = [
    pytest.param("LSTM", {}, id="LSTM"),
    pytest.param("GRU", {}, id="GRU"),
    pytest.param("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True},
                 id="LSTM-L2-bi-batch_first"),
    pytest.param("GRU", {"num_layers": 2, "bidirectional": True, "batch_first": True,
                         "bias": False}, id="GRU-L2-bi-batch_first-no_bias"),
    pytest.param("LSTMCell", {}, id="LSTMCell"),
    pytest.param("GRUCell", {"bias": False}, id="GRUCell-no_bias"),
]


def _input(mode, kw):
    g = torch.Generator().manual_seed(1)
    if mode.endswith("Cell"):
        return torch.randn(3, INPUT, generator=g, dtype=torch.float64)
    shape = (3, 5, INPUT) if kw.get("batch_first") else (5, 3, INPUT)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


@pytest.mark.parametrize("mode,kw", CASES)
def test_round_trip(mode, kw):
    torch.manual_seed(0)
    ref = getattr(torch.nn, mode)(INPUT, HIDDEN, dtype=torch.float64, **kw)
    ref.eval()
    ours = fastgates.from_torch(ref)
    assert type(ours) is getattr(fastgates, mode)
    assert repr(ours) == repr(ref)
    assert ours.training is False
    assert_same_parameters(ours, ref)
    x = _input(mode, kw)
    for a, b in zip(_flat(ours(x)), _flat(ref(x)), strict=True):
        assert_close(a, b, f"{mode} output")

    back = ours.to_torch()
    assert type(back) is getattr(torch.nn, mode)
    assert repr(back) == repr(ref) and back.training is False
    assert_same_parameters(back, ref)
    for a, b in zip(_flat(back(x)), _flat(ref(x)), strict=True):
        assert torch.equal(a, b)


def test_conversion_keeps_dtype_training_and_requires_grad_and_draws_no_random_numbers():
    ref = torch.nn.GRU(INPUT, HIDDEN, num_layers=2, dropout=0.25)  # float32, training
    ref.weight_hh_l1.requires_grad_(False)
    state = torch.get_rng_state()
    ours = fastgates.from_torch(ref)
    back = ours.to_torch()
    assert torch.equal(torch.get_rng_state(), state)
    for m in (ours, back):
        assert m.training is True and m.dropout == 0.25
        assert m.weight_ih_l0.dtype == torch.float32
        assert m.weight_hh_l1.requires_grad is False and m.weight_hh_l0.requires_grad is True


def test_from_torch_errors():
    for module in (torch.nn.Linear(2, 3), torch.nn.RNN(2, 3), fastgates.LSTM(2, 3)):
        with pytest.raises(TypeError, match="from_torch"):
            fastgates.from_torch(module)

    class MyLSTM(torch.nn.LSTM):
        pass

    with pytest.raises(TypeError, match="subclass"):
        fastgates.from_torch(MyLSTM(2, 3))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(INPUT, INPUT), torch.nn.Tanh())
        self.rnn = torch.nn.LSTM(INPUT, HIDDEN, batch_first=True)
        self.cell = torch.nn.GRUCell(HIDDEN, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, 2)

    def forward(self, x):
        y, (h, _) = self.rnn(self.encoder(x))
        h = self.cell(y[:, -1], h[0])
        return self.head(h)


def test_convert_custom_module():
    torch.manual_seed(0)
    model = Model().double().eval()
    x = torch.randn(3, 5, INPUT, dtype=torch.float64)
    before = model(x)
    linear = model.head
    assert fastgates.convert(model) is model
    assert type(model.rnn) is fastgates.LSTM and type(model.cell) is fastgates.GRUCell
    assert model.head is linear and type(model.encoder[0]) is torch.nn.Linear
    assert model.training is False and model.rnn.training is False
    assert model.rnn.weight_ih_l0.dtype == torch.float64
    assert_close(model(x), before, "converted model output")


def test_convert_sequential_and_top_level():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.GRUCell(INPUT, HIDDEN), torch.nn.Linear(HIDDEN, 2))
    x = torch.randn(3, INPUT)
    before = model(x)
    assert fastgates.convert(model) is model
    assert type(model[0]) is fastgates.GRUCell and model.training is True
    assert model[0].weight_ih.dtype == torch.float32
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)

    top = torch.nn.LSTMCell(INPUT, HIDDEN)
    new = fastgates.convert(top)
    assert type(new) is fastgates.LSTMCell and type(top) is torch.nn.LSTMCell
    assert fastgates.convert(torch.nn.Linear(2, 2)).__class__ is torch.nn.Linear


def test_convert_shared_module_once():
    lstm = torch.nn.LSTM(INPUT, HIDDEN)
    model = torch.nn.ModuleDict({"a": lstm, "b": torch.nn.Sequential(lstm)})
    fastgates.convert(model)
    assert type(model["a"]) is fastgates.LSTM and model["b"][0] is model["a"]


def test_convert_projections_without_a_warning():
    # LSTMs with proj_size > 0 convert like the others (see also test_projection.py).
    proj = torch.nn.LSTM(INPUT, HIDDEN, proj_size=2)
    model = torch.nn.Sequential(torch.nn.Linear(INPUT, INPUT), proj, torch.nn.GRU(2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastgates.convert(model)
        top = fastgates.convert(proj)
    assert type(model[1]) is fastgates.LSTM and model[1].proj_size == 2
    assert type(model[2]) is fastgates.GRU
    assert type(top) is fastgates.LSTM and top is not proj and top.proj_size == 2
    assert_same_parameters(top, proj)
