"""The LSTM custom ops ``fastgates::lstm_forward`` and ``fastgates::lstm_backward``.

Shapes: x [T, B, I], w_ih [4H, I], w_hh [4H, H], b_ih / b_hh [4H] or None, h0 / c0 [B, H]
(torch.nn layout; gate order i, f, g, o). The input projection and every weight / input
gradient are large torch GEMMs; the kernels in ``fastgates._C`` run the sequential part.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _backend
from ._common import (
    EMPTY,
    check_grad_mask,
    forbid_double_backward,
    grad_or_zeros,
    combined_bias,
    input_side_grads,
    is_empty,
    no_saved_tensors_error,
    recurrent_weight_grad,
)

GATES = 4


@torch.library.custom_op("fastgates::lstm_forward", mutates_args=(), device_types="cpu")
def lstm_forward(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    save_for_backward: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns (y [T,B,H], h_n [B,H], c_n [B,H], saved_gates [T,B,4H], saved_c [T,B,H]).

    saved_gates / saved_c are what the backward op needs; both are 0-sized when
    ``save_for_backward`` is False.
    """
    steps, batch, input_size = x.shape
    hidden = w_hh.shape[1]
    y = x.new_empty((steps, batch, hidden))
    h_n = x.new_empty((batch, hidden))
    c_n = x.new_empty((batch, hidden))
    saved_gates = x.new_empty((steps, batch, GATES * hidden) if save_for_backward else EMPTY)
    saved_c = x.new_empty((steps, batch, hidden) if save_for_backward else EMPTY)
    if is_empty(steps, batch, hidden):
        h_n.copy_(h0)
        c_n.copy_(c0)
        return y, h_n, c_n, saved_gates, saved_c
    threads = _backend.num_threads()
    _backend.C().lstm_forward(
        x.contiguous(),
        w_ih.contiguous(),
        combined_bias(b_ih, b_hh),
        w_hh.contiguous(),
        h0.contiguous(),
        c0.contiguous(),
        x.new_empty((steps, batch, GATES * hidden)),
        y,
        h_n,
        c_n,
        saved_gates if save_for_backward else None,
        saved_c if save_for_backward else None,
        _backend.workspace("lstm_forward", x.dtype, steps, batch, input_size, hidden, threads),
        threads,
    )
    return y, h_n, c_n, saved_gates, saved_c


@lstm_forward.register_fake
def _(x, w_ih, w_hh, b_ih, b_hh, h0, c0, save_for_backward):
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    return (
        x.new_empty((steps, batch, hidden)),
        x.new_empty((batch, hidden)),
        x.new_empty((batch, hidden)),
        x.new_empty((steps, batch, GATES * hidden) if save_for_backward else EMPTY),
        x.new_empty((steps, batch, hidden) if save_for_backward else EMPTY),
    )


@torch.library.custom_op("fastgates::lstm_backward", mutates_args=(), device_types="cpu")
def lstm_backward(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    y: Tensor,
    saved_gates: Tensor,
    saved_c: Tensor,
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Tensor,
    grad_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns (dx, dw_ih, dw_hh, db, dh0, dc0); db is the gradient of b_ih and of b_hh.

    ``grad_mask`` = [x, w_ih, w_hh, bias]: the gradients to compute; the others are 0-sized.
    """
    check_grad_mask(grad_mask, 4, "fastgates::lstm_backward")
    need_x, need_w_ih, need_w_hh, need_b = grad_mask
    steps, batch, input_size = x.shape
    hidden = w_hh.shape[1]
    dgates = x.new_empty((steps, batch, GATES * hidden))
    dh0 = x.new_empty((batch, hidden))
    dc0 = x.new_empty((batch, hidden))
    if is_empty(steps, batch, hidden):
        dgates.zero_()
        dh0.copy_(dh_n)
        dc0.copy_(dc_n)
    else:
        threads = _backend.num_threads()
        _backend.C().lstm_backward(
            w_hh.contiguous(),
            saved_gates.contiguous(),
            saved_c.contiguous(),
            c0.contiguous(),
            dy.contiguous(),
            dh_n.contiguous(),
            dc_n.contiguous(),
            dgates,
            dh0,
            dc0,
            _backend.workspace("lstm_backward", x.dtype, steps, batch, 0, hidden, threads),
            threads,
        )
    dx, dw_ih, db = input_side_grads(dgates, x, w_ih, need_x, need_w_ih, need_b)
    dw_hh = recurrent_weight_grad(dgates, h0, y) if need_w_hh else x.new_empty(EMPTY)
    return dx, dw_ih, dw_hh, db, dh0, dc0


@lstm_backward.register_fake
def _(x, w_ih, w_hh, h0, c0, y, saved_gates, saved_c, dy, dh_n, dc_n, grad_mask):
    check_grad_mask(grad_mask, 4, "fastgates::lstm_backward")
    need_x, need_w_ih, need_w_hh, need_b = grad_mask
    steps, batch, input_size = x.shape
    hidden = w_hh.shape[1]
    return (
        x.new_empty((steps, batch, input_size) if need_x else EMPTY),
        x.new_empty((GATES * hidden, input_size) if need_w_ih else EMPTY),
        x.new_empty((GATES * hidden, hidden) if need_w_hh else EMPTY),
        x.new_empty((GATES * hidden,) if need_b else EMPTY),
        x.new_empty((batch, hidden)),
        x.new_empty((batch, hidden)),
    )


def _setup_context(ctx, inputs, output):
    x, w_ih, w_hh, b_ih, b_hh, h0, c0, save_for_backward = inputs
    y, _h_n, _c_n, saved_gates, saved_c = output
    ctx.mark_non_differentiable(saved_gates, saved_c)
    ctx.has_saved = save_for_backward
    ctx.save_for_backward(x, w_ih, w_hh, h0, c0, y, saved_gates, saved_c)


def _backward(ctx, dy, dh_n, dc_n, _dsaved_gates, _dsaved_c):
    if not ctx.has_saved:
        raise no_saved_tensors_error("fastgates::lstm_forward")
    x, w_ih, w_hh, h0, c0, y, saved_gates, saved_c = ctx.saved_tensors
    need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0, need_c0, _ = ctx.needs_input_grad
    dx, dw_ih, dw_hh, db, dh0, dc0 = lstm_backward(
        x, w_ih, w_hh, h0, c0, y, saved_gates, saved_c,
        grad_or_zeros(dy, y),
        grad_or_zeros(dh_n, h0),
        grad_or_zeros(dc_n, c0),
        [need_x, need_w_ih, need_w_hh, need_b_ih or need_b_hh],
    )
    # b_ih and b_hh get equal gradients; never hand autograd one tensor for both.
    db_ih = db if need_b_ih else None
    db_hh = (db.clone() if need_b_ih else db) if need_b_hh else None
    return (
        dx if need_x else None,
        dw_ih if need_w_ih else None,
        dw_hh if need_w_hh else None,
        db_ih,
        db_hh,
        dh0 if need_h0 else None,
        dc0 if need_c0 else None,
        None,
    )


lstm_forward.register_autograd(_backward, setup_context=_setup_context)
forbid_double_backward(lstm_backward, "fastgates::lstm_backward")
