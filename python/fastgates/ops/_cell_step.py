"""One step of an LSTM or GRU cell, for the cell modules (nn/cells.py): x [B, I], states [B, H].

In plain eager training on the CPU (_runs_own_step) a step runs as an autograd Function of its
own instead of the sequence ops' eager formula (``lstm_forward_eager``): the same kernels
with T = 1 and the same weight-gradient products, so the same numbers bit for bit, but two
outputs instead of six, no 0-sized placeholders, no grad masks or sequence layouts, and one
array saved for the backward. A cell runs one step per call, so that Python path was most of a
training step: an LSTMCell at B = 1, H = 256 took 425 µs a step (forward and backward) through
the ops, 306 through torch.nn, a minimal Function around the same kernels 276, and this one
about 375 (Intel Xeon VM, 2 threads; README, "The cells' own training step"). Everywhere else
(inference, torch.compile, export, dispatch modes, the CUDA path) the step is a call of the
sequence ops; with create_graph the Function's backward calls the backward op, which refuses a
double backward."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _backend, _reused_arrays
from . import _cpu_path
from ._common import grad_or_zeros, kernels, matmul, plain_eager, saved_array
from .functional import _grad_needed, _gru, _lstm
from .gru import GATES as GRU_GATES
from .gru import SAVED_PER_UNIT as GRU_SAVED_PER_UNIT
from .gru import gru_backward
from .lstm import GATES as LSTM_GATES
from .lstm import lstm_backward


def lstm_cell_step(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                   h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor]:
    """(h1, c1) of one LSTM step from x [B, I] and (h0, c0) [B, H], arguments checked."""
    save = _grad_needed(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    if save and _runs_own_step(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        return _LSTMCellStep.apply(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    return _lstm(x.unsqueeze(0), w_ih, w_hh, b_ih, b_hh, h0, c0, save=save)[1]


def gru_cell_step(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                  h0: Tensor) -> Tensor:
    """h1 of one GRU step from x [B, I] and h0 [B, H], arguments checked."""
    save = _grad_needed(x, w_ih, w_hh, b_ih, b_hh, h0)
    if save and _runs_own_step(x, w_ih, w_hh, b_ih, b_hh, h0):
        return _GRUCellStep.apply(x, w_ih, w_hh, b_ih, b_hh, h0)
    return _gru(x.unsqueeze(0), w_ih, w_hh, b_ih, b_hh, h0, save=save)[1]


def _runs_own_step(x: Tensor, *tensors: Tensor | None) -> bool:
    """Whether a step that needs a gradient runs its own Function: in plain eager execution and
    on the CPU kernels (not the CUDA path, nor its emulation in tests). Asked only in training,
    so that inference pays for no test the sequence ops make again."""
    return plain_eager(x, *tensors) and kernels(x) is _cpu_path


def _optional(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _lstm_saved(saved: Tensor, batch: int, hidden: int) -> tuple[Tensor, Tensor]:
    """(saved_gates [1, B, 4H], saved_c [1, B, H]): views of the one array an LSTM step keeps
    for its backward."""
    size = LSTM_GATES * batch * hidden
    return saved[:size].view(1, batch, LSTM_GATES * hidden), saved[size:].view(1, batch, hidden)


def _unread_y(h0: Tensor) -> Tensor:
    """An array [1, B, H] for the backward's y argument, which it reads only for rows that
    continue a step before (their h_{t-1}): at T = 1 every row starts from h0, so h0 stands in
    and the step keeps no y alive for its backward."""
    return h0.unsqueeze(0)


def _zero_row(h0: Tensor) -> Tensor:
    """The gradient of y, which a step does not return: one row [H] of zeros, which the backward
    kernels read for every row (kernel_sequence_gradient)."""
    return h0.new_zeros(h0.shape[-1:])


def _weight_grads(dgates: tuple[Tensor, Tensor], x: Tensor, w_ih: Tensor, h0: Tensor,
                  need_x: bool, need_w_ih: bool, need_w_hh: bool) -> tuple[Tensor | None, ...]:
    """(dx, dW_ih, dW_hh) from the gate gradients [B, G·H] of x's product and of h0's (one array
    twice for the LSTM), as the sequence ops make them (_common.input_side_grads,
    recurrent_weight_grad at T = 1)."""
    dx = matmul(dgates[0], w_ih) if need_x else None
    dw_ih = matmul(dgates[0], x, transpose_a=True) if need_w_ih else None
    dw_hh = matmul(dgates[1], h0, transpose_a=True) if need_w_hh else None
    return dx, dw_ih, dw_hh


class _LSTMCellStep(torch.autograd.Function):
    # forward takes ctx itself (see _common.eager_autograd: no argument binding per call).
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        batch, hidden = c0.shape
        x = x.contiguous()
        h0, c0 = h0.contiguous(), c0.contiguous()
        y = x.new_empty((1, batch, hidden))  # the kernel's sequence output; h1 holds the same row
        h1 = x.new_empty((batch, hidden))
        c1 = x.new_empty((batch, hidden))
        saved = _reused_arrays.empty(((LSTM_GATES + 1) * batch * hidden,), x)
        _cpu_path.lstm_forward(x.unsqueeze(0), w_ih.contiguous(), _optional(b_ih), w_hh.contiguous(), _optional(b_hh),
                               None, h0, c0, None, False, y, h1, c1, *_lstm_saved(saved, batch, hidden), None)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, w_ih, w_hh, h0, c0, saved)
        return h1, c1

    @staticmethod
    def backward(ctx, dh1, dc1):
        x, w_ih, w_hh, h0, c0, saved = ctx.saved_tensors
        need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0, need_c0 = ctx.needs_input_grad
        batch, hidden = c0.shape
        saved_gates, saved_c = _lstm_saved(saved, batch, hidden)
        dh1 = h0.new_zeros(h0.shape) if dh1 is None else dh1.contiguous()
        dc1 = c0.new_zeros(c0.shape) if dc1 is None else dc1.contiguous()
        if torch.is_grad_enabled():
            # create_graph: the backward op itself, whose formula refuses a double backward.
            y = _unread_y(h0)
            dx, dw_ih, dw_hh, db, _, dh0, dc0 = lstm_backward(
                x.unsqueeze(0), w_ih, w_hh, None, h0, c0, y, saved_gates, saved_c, x.new_empty((0,)), None, False,
                grad_or_zeros(None, y), dh1, dc1,
                [need_x, need_w_ih, need_w_hh, need_b_ih or need_b_hh, False, need_h0, need_c0])
            dx = dx[0] if need_x else None
        else:
            (dgates,) = _backend.gradient_scratch(x, (batch, LSTM_GATES * hidden))
            dh0 = x.new_empty((batch, hidden)) if need_h0 else None
            dc0 = x.new_empty((batch, hidden)) if need_c0 else None
            db = x.new_empty((LSTM_GATES * hidden,)) if need_b_ih or need_b_hh else None
            _cpu_path.lstm_backward(w_hh.contiguous(), None, saved_gates, saved_c, c0, None, False,
                                    _zero_row(h0), dh1, dc1, dgates.unsqueeze(0), None, dh0, dc0, db)
            dx, dw_ih, dw_hh = _weight_grads((dgates, dgates), x, w_ih, h0, need_x, need_w_ih, need_w_hh)
        # b_ih and b_hh get equal gradients; never hand autograd one tensor for both.
        db_ih = db if need_b_ih else None
        db_hh = (db.clone() if need_b_ih else db) if need_b_hh else None
        return (dx, dw_ih if need_w_ih else None, dw_hh if need_w_hh else None, db_ih, db_hh,
                dh0 if need_h0 else None, dc0 if need_c0 else None)


class _GRUCellStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0):
        batch, hidden = h0.shape
        x = x.contiguous()
        sequence = x.unsqueeze(0)
        h0 = h0.contiguous()
        y = x.new_empty((1, batch, hidden))
        h1 = x.new_empty((batch, hidden))
        saved = saved_array(sequence, GRU_SAVED_PER_UNIT * hidden)
        _cpu_path.gru_forward(sequence, w_ih.contiguous(), _optional(b_ih), w_hh.contiguous(), _optional(b_hh), h0,
                              None, False, y, h1, saved)
        ctx.set_materialize_grads(False)
        # Not h1: it is the caller's, who may change it in place, as torch.nn's GRUCell allows.
        ctx.save_for_backward(x, w_ih, w_hh, h0, saved)
        return h1

    @staticmethod
    def backward(ctx, dh1):
        x, w_ih, w_hh, h0, saved = ctx.saved_tensors
        need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0 = ctx.needs_input_grad
        y = _unread_y(h0)
        dh1 = h0.new_zeros(h0.shape) if dh1 is None else dh1.contiguous()
        if torch.is_grad_enabled():
            # create_graph: the backward op itself, whose formula refuses a double backward.
            dx, dw_ih, dw_hh, db_ih, db_hh, dh0 = gru_backward(
                x.unsqueeze(0), w_ih, w_hh, h0, y, saved, None, False, grad_or_zeros(None, y), dh1,
                [need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0])
            dx = dx[0] if need_x else None
        else:
            batch, hidden = h0.shape
            gate_shape = (batch, GRU_GATES * hidden)
            dgates_x, dgates_h = _backend.gradient_scratch(x, gate_shape, gate_shape)
            dh0 = x.new_empty((batch, hidden)) if need_h0 else None
            db_ih = x.new_empty((GRU_GATES * hidden,)) if need_b_ih else None
            db_hh = x.new_empty((GRU_GATES * hidden,)) if need_b_hh else None
            _cpu_path.gru_backward(w_hh.contiguous(), saved, h0, y, None, False, _zero_row(h0), dh1,
                                   dgates_x.unsqueeze(0), dgates_h.unsqueeze(0), dh0, db_ih, db_hh)
            dx, dw_ih, dw_hh = _weight_grads((dgates_x, dgates_h), x, w_ih, h0, need_x, need_w_ih, need_w_hh)
        return (dx, dw_ih if need_w_ih else None, dw_hh if need_w_hh else None,
                db_ih if need_b_ih else None, db_hh if need_b_hh else None, dh0 if need_h0 else None)
