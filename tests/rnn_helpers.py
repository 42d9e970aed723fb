"""Shared helpers for the fastgates layer / op tests: paired modules, runs, tolerances."""

from __future__ import annotations

import torch

import fastgates

MODES = ("LSTM", "GRU")
DTYPES = (torch.float64, torch.float32)


def tolerances(dtype: torch.dtype, expected: torch.Tensor) -> dict:
    """rtol/atol for comparing against torch.nn, atol scaled by the result's magnitude
    (gradients summed over long sequences or wide layers grow)."""
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-10 * scale}
    return {"rtol": 1e-4, "atol": 1e-5 * scale}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(
        actual.detach(), expected.detach(), **tolerances(expected.dtype, expected),
        msg=lambda m: f"{what}: {m}",
    )


def make_pair(mode: str, input_size: int, hidden_size: int, *, dtype=torch.float64, seed=0, **kw):
    """(fastgates module, torch.nn module) with identical weights (torch's loaded into ours)."""
    torch.manual_seed(seed)
    ref = getattr(torch.nn, mode)(input_size, hidden_size, dtype=dtype, **kw)
    ours = getattr(fastgates, mode)(input_size, hidden_size, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def make_input(mode, steps, batch, input_size, hidden_size, *, dtype, batch_first=False,
               unbatched=False, with_hx=True, seed=1, layers=1):
    """Random (input, hx) in torch.nn's layout; hx is None without with_hx. ``layers`` is
    num_layers * num_directions (the states' leading size)."""
    g = torch.Generator().manual_seed(seed)
    if unbatched:
        shape = (steps, input_size)
        state = (layers, hidden_size)
    else:
        shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
        state = (layers, batch, hidden_size)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if not with_hx:
        return x, None
    h0 = torch.randn(state, generator=g, dtype=dtype)
    if mode == "LSTM":
        return x, (h0, torch.randn(state, generator=g, dtype=dtype))
    return x, h0


def outputs_flat(mode, result):
    """LSTM's (y, (h, c)) / GRU's (y, h) as a flat list."""
    y, state = result
    return [y, *state] if mode == "LSTM" else [y, state]


def hx_flat(mode, hx):
    if hx is None:
        return []
    return list(hx) if mode == "LSTM" else [hx]


def leaf(t):
    return None if t is None else t.detach().clone().requires_grad_(True)


def leaf_hx(mode, hx):
    if hx is None:
        return None
    return tuple(leaf(t) for t in hx) if mode == "LSTM" else leaf(hx)


def run_with_grads(mode, module, x, hx, seed=2):
    """Forward, then backward of a random linear functional of every output.

    Returns (outputs, grads) where grads are those of [input, *hx, *parameters]."""
    x = leaf(x)
    hx = leaf_hx(mode, hx)
    outs = outputs_flat(mode, module(x, hx))
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    inputs = [x, *hx_flat(mode, hx), *module.parameters()]
    grads = torch.autograd.grad(loss, inputs)
    return [o.detach() for o in outs], list(grads)


def grad_names(mode, module, with_hx):
    names = ["input"]
    if with_hx:
        names += ["h_0", "c_0"] if mode == "LSTM" else ["h_0"]
    return names + [n for n, _ in module.named_parameters()]


def output_names(mode):
    return ["output", "h_n", "c_n"] if mode == "LSTM" else ["output", "h_n"]


# Stacked and bidirectional layouts for the construction and state-dict tests.
STACKED_LAYOUTS = [
    {"num_layers": 2},
    {"num_layers": 3, "bias": False},
    {"bidirectional": True},
    {"num_layers": 3, "bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "bias": False, "batch_first": True,
     "dropout": 0.25},
]
