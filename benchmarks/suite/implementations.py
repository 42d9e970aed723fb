"""The implementations compared, and the callable each runs per mode.

- ``torch.nn``: ``torch.nn.LSTM`` / ``torch.nn.GRU`` (on CUDA: cuDNN); for the cell modules
  ``torch.nn.LSTMCell`` / ``torch.nn.GRUCell``, called once per step.
- ``fastgates``: ``fastgates.LSTM`` / ``fastgates.GRU`` (``fastgates.LSTMCell`` /
  ``fastgates.GRUCell``) with the same state dict.
- ``reference``: ``fastgates.reference`` (NumPy, float64, on the CPU) on the same weights and
  input, layer after layer; run only for small cases (:func:`reference_runs`).

Modes: ``forward`` is inference under ``torch.no_grad()``; ``train`` is forward + backward of
``y.sum() + h_n.sum()`` (``+ c_n.sum()`` for the LSTM), the same loss for every implementation
(for the reference: its forward, then its gradient function with upstream gradients of ones).
A cell module runs the T steps from zero states, ``hx = cell(x[t], hx)``, and its y is the h of
every step: the same computation and loss as the one-layer case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import fastgates
from fastgates import reference

from .cases import MODULES, STEP_CELLS, Case, is_lstm

IMPLEMENTATIONS = ("torch.nn", "fastgates", "reference")
MODES = ("forward", "train")

# The reference runs when T * B * H * (I + H) * num_layers is at most this: one train call then
# takes a few tenths of a second on the 2-core machine this was tuned on.
REFERENCE_MAX_WORK = 2**25


def reference_runs(case: Case) -> bool:
    """Whether the case is small enough for the NumPy reference."""
    return case.T * case.B * case.H * (case.I + case.H) * case.layers <= REFERENCE_MAX_WORK


@dataclass
class Subjects:
    """The layers (or cell modules) and the input of one case, on the same weights: the
    torch.nn module, the fastgates module loaded from its state dict, and the input ``x``
    (T, B, I)."""

    case: Case
    torch_layer: torch.nn.Module
    fast_layer: torch.nn.Module
    x: torch.Tensor


def build(case: Case, device: str, dtype: torch.dtype) -> Subjects:
    """The torch.nn and fastgates modules of a case (seeded) and a random input."""
    name = MODULES[case.cell]
    layers = {} if case.cell in STEP_CELLS else {"num_layers": case.layers}
    torch.manual_seed(0)
    torch_layer = getattr(torch.nn, name)(case.I, case.H, **layers, device=device, dtype=dtype)
    fast_layer = getattr(fastgates, name)(case.I, case.H, **layers, device=device, dtype=dtype)
    fast_layer.load_state_dict(torch_layer.state_dict())
    x = torch.randn(case.T, case.B, case.I, device=device, dtype=dtype)
    return Subjects(case, torch_layer, fast_layer, x)


def _layer_step(layer: torch.nn.Module, x: torch.Tensor, mode: str) -> Callable[[], None]:
    if mode == "forward":
        def run():
            with torch.no_grad():
                layer(x)
        return run

    def run():
        y, state = layer(x)
        states = state if isinstance(state, tuple) else (state,)
        loss = y.sum() + sum(s.sum() for s in states)
        loss.backward()
    return run


def _cell_steps(cell: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """One call of the cell module per step from zero states: (h of every step, final states)."""
    hx = None
    hs = []
    for t in range(x.shape[0]):
        hx = cell(x[t], hx)
        hs.append(hx[0] if isinstance(hx, tuple) else hx)
    return hs, hx if isinstance(hx, tuple) else (hx,)


def _cell_step(cell: torch.nn.Module, x: torch.Tensor, mode: str) -> Callable[[], None]:
    if mode == "forward":
        def run():
            with torch.no_grad():
                _cell_steps(cell, x)
        return run

    def run():
        hs, states = _cell_steps(cell, x)
        loss = sum(h.sum() for h in hs) + sum(s.sum() for s in states)
        loss.backward()
    return run


def _reference_step(subjects: Subjects, mode: str) -> Callable[[], None]:
    case = subjects.case
    # float64 NumPy copies, made once: the conversion is not part of what is timed.
    params = {k: v.detach().to("cpu", torch.float64).numpy() for k, v in subjects.torch_layer.state_dict().items()}
    # A layer's parameters are named per layer (weight_ih_l0, ...), a cell module's are not.
    weights = [tuple(params[name if case.cell in STEP_CELLS else f"{name}_l{k}"]
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
               for k in range(case.layers)]
    x = subjects.x.detach().to("cpu", torch.float64).numpy()
    zeros = np.zeros((case.B, case.H))
    ones_y = np.ones((case.T, case.B, case.H))
    ones_state = np.ones((case.B, case.H))
    lstm = is_lstm(case.cell)

    def forward():
        inputs = [x]
        for w in weights:
            y, _ = reference.lstm(inputs[-1], *w, zeros, zeros) if lstm else reference.gru(inputs[-1], *w, zeros)
            inputs.append(y)
        return inputs

    if mode == "forward":
        return forward

    def train():
        inputs = forward()
        # Backward through the stack: the top layer's dy is ones (from y.sum()); a lower layer's
        # dy is the gradient of the input of the layer above. Every h_n (and c_n) gets ones.
        dy = ones_y
        for k in reversed(range(case.layers)):
            if lstm:
                grads = reference.lstm_grad(inputs[k], *weights[k], zeros, zeros, dy, ones_state, ones_state)
            else:
                grads = reference.gru_grad(inputs[k], *weights[k], zeros, dy, ones_state)
            dy = grads["x"]
    return train


def step(subjects: Subjects, impl: str, mode: str) -> Callable[[], None]:
    """The callable that runs one call of ``impl`` in ``mode`` on the case's input."""
    run = _cell_step if subjects.case.cell in STEP_CELLS else _layer_step
    if impl == "torch.nn":
        return run(subjects.torch_layer, subjects.x, mode)
    if impl == "fastgates":
        return run(subjects.fast_layer, subjects.x, mode)
    if impl == "reference":
        return _reference_step(subjects, mode)
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLEMENTATIONS}")
