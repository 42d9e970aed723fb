"""Functional forms of the layers: checked arguments, autograd, and nothing else.

Same argument order and results as ``fastgates.reference``: x [T, B, I], torch.nn weight
shapes, biases may be None, states [B, H].
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as forward_ad
from torch import Tensor

from .._validation import check_sequence_args
from ._common import plain_eager
from .gru import gru_forward, gru_forward_eager, gru_run
from .lstm import lstm_forward, lstm_forward_eager, lstm_run


def _grad_needed(*tensors: Tensor | None) -> bool:
    """Whether autograd must record the call; refuses forward-mode AD, which the ops lack
    (it would otherwise drop the tangents silently)."""
    if not torch.compiler.is_compiling() and forward_ad._current_level >= 0:
        for t in tensors:
            if t is not None and forward_ad.unpack_dual(t).tangent is not None:
                raise NotImplementedError(
                    "fastgates: forward-mode AD (dual tensors, torch.func.jvp) is not implemented by the "
                    "fastgates ops; an input has a tangent. Use torch.nn.LSTM / torch.nn.GRU for it."
                )
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _eager(save: bool, run, eager_autograd, *tensors: Tensor | None):
    """In plain eager execution (plain_eager), what runs instead of the op: ``run``, the
    kernels without the op's 0-sized saved outputs, when autograd need not record the call,
    else the op's autograd formula around its implementation (_common.eager_autograd). None
    elsewhere (torch.compile, export, dispatch modes...), where the op itself must run."""
    if not plain_eager(*tensors):
        return None
    return eager_autograd if save else run


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


def _lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr=None, batch_sizes=None, reverse=False, save=None):
    """``lstm`` without the checks, for callers that have checked already (the layers); also
    takes a projection ``w_hr`` [P, H], packed x [N, I] with ``batch_sizes``, ``reverse`` (see
    ops/lstm.py), and ``save``: _grad_needed of the arguments when the caller knows it."""
    if save is None:
        save = _grad_needed(x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0)
    tensors = (x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0)
    op = _eager(save, lstm_run, lstm_forward_eager, *tensors) or lstm_forward
    if op is lstm_run:
        y, h_n, c_n = lstm_run(x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse)
    else:
        y, h_n, c_n, _, _, _ = op(x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse, save)
    return y, (h_n, c_n)


def _gru(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes=None, reverse=False, save=None):
    """``gru`` without the checks, for callers that have checked already (the layers); also
    takes packed x [N, I] with ``batch_sizes``, ``reverse`` (see ops/gru.py), and ``save`` as
    ``_lstm`` does."""
    if save is None:
        save = _grad_needed(x, w_ih, w_hh, b_ih, b_hh, h0)
    tensors = (x, w_ih, w_hh, b_ih, b_hh, h0)
    op = _eager(save, gru_run, gru_forward_eager, *tensors) or gru_forward
    if op is gru_run:
        y, h_n = gru_run(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse)
    else:
        y, h_n, _ = op(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse, save)
    return y, h_n
