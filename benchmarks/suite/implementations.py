"""The implementations compared, and the callable each runs per mode.

- ``torch.nn``: ``torch.nn.LSTM`` / ``torch.nn.GRU`` (on CUDA: cuDNN).
- ``fastgates``: ``fastgates.LSTM`` / ``fastgates.GRU`` with the same state dict.
- ``reference``: ``fastgates.reference`` (NumPy, float64, on the CPU) on the same weights and
  input, layer after layer; run only for small cases (:func:`reference_runs`).

Modes: ``forward`` is inference under ``torch.no_grad()``; ``train`` is forward + backward of
``y.sum() + h_n.sum()`` (``+ c_n.sum()`` for the LSTM), the same loss for every implementation
(for the reference: its forward, then its gradient function with upstream gradients of ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import fastgates
from fastgates import reference

from .cases import Case

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
    """The layers and the input of one case, on the same weights: the torch.nn layer, the
    fastgates layer loaded from its state dict, and the input ``x`` (T, B, I)."""

    case: Case
    torch_layer: torch.nn.Module
    fast_layer: torch.nn.Module
    x: torch.Tensor


def build(case: Case, device: str, dtype: torch.dtype) -> Subjects:
    """The torch.nn and fastgates layers of a case (seeded) and a random input."""
    torch_cls, fast_cls = (torch.nn.LSTM, fastgates.LSTM) if case.cell == "lstm" else (torch.nn.GRU, fastgates.GRU)
    torch.manual_seed(0)
    torch_layer = torch_cls(case.I, case.H, num_layers=case.layers, device=device, dtype=dtype)
    fast_layer = fast_cls(case.I, case.H, num_layers=case.layers, device=device, dtype=dtype)
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


def _reference_step(subjects: Subjects, mode: str) -> Callable[[], None]:
    case = subjects.case
    # float64 NumPy copies, made once: the conversion is not part of what is timed.
    params = {k: v.detach().to("cpu", torch.float64).numpy() for k, v in subjects.torch_layer.state_dict().items()}
    weights = [tuple(params[f"{name}_l{k}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
               for k in range(case.layers)]
    x = subjects.x.detach().to("cpu", torch.float64).numpy()
    zeros = np.zeros((case.B, case.H))
    ones_y = np.ones((case.T, case.B, case.H))
    ones_state = np.ones((case.B, case.H))
    lstm = case.cell == "lstm"

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
    if impl == "torch.nn":
        return _layer_step(subjects.torch_layer, subjects.x, mode)
    if impl == "fastgates":
        return _layer_step(subjects.fast_layer, subjects.x, mode)
    if impl == "reference":
        return _reference_step(subjects, mode)
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLEMENTATIONS}")
