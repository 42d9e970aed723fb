"""Functional forms of the layers: checked arguments, autograd, and nothing else.

Same argument order and results as ``fastgates.reference``: x [T, B, I], torch.nn weight
shapes, biases may be None, states [B, H].
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_sequence_args
from .gru import gru_forward
from .lstm import lstm_forward


def _grad_needed(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def lstm(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor,
    c0: Tensor,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One LSTM layer over a whole sequence: returns (y [T,B,H], (h_n [B,H], c_n [B,H]))."""
    check_sequence_args("fastgates.ops.lstm", 4, x, w_ih, w_hh, b_ih, b_hh, [("h0", h0), ("c0", c0)])
    return _lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0)


def gru(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor,
) -> tuple[Tensor, Tensor]:
    """One GRU layer over a whole sequence: returns (y [T,B,H], h_n [B,H])."""
    check_sequence_args("fastgates.ops.gru", 3, x, w_ih, w_hh, b_ih, b_hh, [("h0", h0)])
    return _gru(x, w_ih, w_hh, b_ih, b_hh, h0)


def _lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr=None, batch_sizes=None, reverse=False):
    """``lstm`` without the checks, for callers that have checked already (the layers); also
    takes a projection ``w_hr`` [P, H], packed x [N, I] with ``batch_sizes``, and ``reverse``
    (see ops/lstm.py)."""
    save = _grad_needed(x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0)
    y, h_n, c_n, _, _, _ = lstm_forward(x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse, save)
    return y, (h_n, c_n)


def _gru(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes=None, reverse=False):
    """``gru`` without the checks, for callers that have checked already (the layers); also
    takes packed x [N, I] with ``batch_sizes``, and ``reverse`` (see ops/gru.py)."""
    save = _grad_needed(x, w_ih, w_hh, b_ih, b_hh, h0)
    y, h_n, _ = gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse, save)
    return y, h_n
