"""The GRU custom ops ``fastgates::gru_forward`` and ``fastgates::gru_backward``.

Shapes (torch.nn layout; gate order r, z, n; n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))):
x [T, B, I] padded, or [N, I] packed with ``batch_sizes`` (torch's PackedSequence.batch_sizes,
on the CPU); w_ih [3H, I], w_hh [3H, H], b_ih / b_hh [3H] or None, h0 [B, H]. ``reverse`` runs
the sequence backwards (within each sequence when packed). The input projection runs inside
the forward kernel; every weight / input gradient is a large GEMM (torch's, or fastgates' own:
``_common.matmul``); the kernels in ``fastgates._C`` run the sequential part and sum the bias
gradients (on CUDA a torch sum does).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import (
    EMPTY,
    backward_may_skip_dispatcher,
    checked_grad_mask,
    eager_autograd,
    forbid_double_backward,
    gate_gradients,
    grad_or_zeros,
    input_side_grads,
    is_empty,
    kernel_sequence_gradient,
    no_saved_tensors_error,
    recurrent_weight_grad,
    saved_array,
    kernels as _kernels,
    sequence_shape,
)

GATES = 3
SAVED_PER_UNIT = 4  # r, z, n, W_hn h_{t-1} + b_hn


def gru_forward_impl(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor,
    batch_sizes: Tensor | None,
    reverse: bool,
    save_for_backward: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (y [·, H], h_n [B, H], saved [·, 4H]), "·" being x's leading dimensions; saved
    is 0-sized unless asked for."""
    hidden = w_hh.shape[1]
    saved = saved_array(x, SAVED_PER_UNIT * hidden) if save_for_backward else x.new_empty(EMPTY)
    y, h_n = gru_run(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse, saved if save_for_backward else None)
    return y, h_n, saved


def gru_run(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor,
    batch_sizes: Tensor | None,
    reverse: bool,
    saved: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The kernels into new (y, h_n); with ``saved``, also the activations the backward needs.
    Eager inference calls this directly (functional.py), without the op's 0-sized output."""
    batch, hidden = h0.shape[0], w_hh.shape[1]
    y = x.new_empty(sequence_shape(x, hidden))
    h_n = x.new_empty((batch, hidden))
    if is_empty(x, batch, hidden):
        h_n.copy_(h0)
        return y, h_n
    _kernels(x).gru_forward(
        x.contiguous(),
        w_ih.contiguous(),
        None if b_ih is None else b_ih.contiguous(),
        w_hh.contiguous(),
        None if b_hh is None else b_hh.contiguous(),
        h0.contiguous(),
        batch_sizes,
        reverse,
        y,
        h_n,
        saved,
    )
    return y, h_n


# The op; eager inference calls gru_run directly (functional.py).
gru_forward = torch.library.custom_op("fastgates::gru_forward", gru_forward_impl, mutates_args=(),
                                      device_types=("cpu", "cuda"))


@gru_forward.register_fake
def _(x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse, save_for_backward):
    batch, hidden = h0.shape[0], w_hh.shape[1]
    return (
        x.new_empty(sequence_shape(x, hidden)),
        x.new_empty((batch, hidden)),
        x.new_empty(sequence_shape(x, SAVED_PER_UNIT * hidden) if save_for_backward else EMPTY),
    )


def gru_backward_impl(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    y: Tensor,
    saved: Tensor,
    batch_sizes: Tensor | None,
    reverse: bool,
    dy: Tensor,
    dh_n: Tensor,
    grad_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns (dx, dw_ih, dw_hh, db_ih, db_hh, dh0).

    ``grad_mask`` = [x, w_ih, w_hh, b_ih, b_hh, h0]: the gradients to compute; the others are
    0-sized. Without dh0 the kernel skips the products with W_hh only dh0 needs (at T = 1, all of
    them); a mask of the first five entries wants dh0 (checked_grad_mask).
    """
    need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0 = checked_grad_mask(
        grad_mask, 6, 1, "fastgates::gru_backward")
    batch, hidden = h0.shape[0], w_hh.shape[1]
    dgates_x, dgates_h = gate_gradients(x, GATES * hidden, GATES * hidden)
    dh0 = x.new_empty((batch, hidden) if need_h0 else EMPTY)
    db_ih = x.new_empty((GATES * hidden,) if need_b_ih else EMPTY)
    db_hh = x.new_empty((GATES * hidden,) if need_b_hh else EMPTY)
    if is_empty(x, batch, hidden):
        dgates_x.zero_()
        dgates_h.zero_()
        db_ih.zero_()
        db_hh.zero_()
        if need_h0:
            dh0.copy_(dh_n)
    else:
        _kernels(x).gru_backward(
            w_hh.contiguous(),
            saved.contiguous(),
            h0.contiguous(),
            y.contiguous(),
            batch_sizes,
            reverse,
            kernel_sequence_gradient(dy),
            dh_n.contiguous(),
            dgates_x,
            dgates_h,
            dh0 if need_h0 else None,
            db_ih if need_b_ih else None,
            db_hh if need_b_hh else None,
        )
    dx, dw_ih = input_side_grads(dgates_x, x, w_ih, need_x, need_w_ih)
    dw_hh = recurrent_weight_grad(dgates_h, h0, y, batch_sizes, reverse) if need_w_hh else x.new_empty(EMPTY)
    return dx, dw_ih, dw_hh, db_ih, db_hh, dh0


# The op; gru_backward_impl is also called directly by eager backward passes (_backward).
gru_backward = torch.library.custom_op("fastgates::gru_backward", gru_backward_impl, mutates_args=(),
                                       device_types=("cpu", "cuda"))


@gru_backward.register_fake
def _(x, w_ih, w_hh, h0, y, saved, batch_sizes, reverse, dy, dh_n, grad_mask):
    need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0 = checked_grad_mask(
        grad_mask, 6, 1, "fastgates::gru_backward")
    batch, hidden = h0.shape[0], w_hh.shape[1]
    input_size = x.shape[-1]
    return (
        x.new_empty(x.shape if need_x else EMPTY),
        x.new_empty((GATES * hidden, input_size) if need_w_ih else EMPTY),
        x.new_empty((GATES * hidden, hidden) if need_w_hh else EMPTY),
        x.new_empty((GATES * hidden,) if need_b_ih else EMPTY),
        x.new_empty((GATES * hidden,) if need_b_hh else EMPTY),
        x.new_empty((batch, hidden) if need_h0 else EMPTY),
    )


def _setup_context(ctx, inputs, output):
    x, w_ih, w_hh, b_ih, b_hh, h0, batch_sizes, reverse, save_for_backward = inputs
    y, _h_n, saved = output
    ctx.mark_non_differentiable(saved)
    # Outputs that did not reach the loss arrive as None rather than as zeros: autograd would
    # otherwise fill a zero tensor the size of each saved array on every backward.
    ctx.set_materialize_grads(False)
    ctx.has_saved = save_for_backward
    ctx.reverse = reverse
    ctx.save_for_backward(x, w_ih, w_hh, h0, y, saved, batch_sizes)


def _backward(ctx, dy, dh_n, _dsaved):
    if not ctx.has_saved:
        raise no_saved_tensors_error("fastgates::gru_forward")
    x, w_ih, w_hh, h0, y, saved, batch_sizes = ctx.saved_tensors
    need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0, *_ = ctx.needs_input_grad
    dy, dh_n = grad_or_zeros(dy, y), grad_or_zeros(dh_n, h0)
    op = gru_backward_impl if backward_may_skip_dispatcher(x, w_ih, w_hh, h0, dy, dh_n) else gru_backward
    dx, dw_ih, dw_hh, db_ih, db_hh, dh0 = op(
        x, w_ih, w_hh, h0, y, saved, batch_sizes, ctx.reverse, dy, dh_n,
        [need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_h0],
    )
    return (
        dx if need_x else None,
        dw_ih if need_w_ih else None,
        dw_hh if need_w_hh else None,
        db_ih if need_b_ih else None,
        db_hh if need_b_hh else None,
        dh0 if need_h0 else None,
        None,
        None,
        None,
    )


gru_forward.register_autograd(_backward, setup_context=_setup_context)
# The same op for plain eager calls that need a gradient (functional.py).
gru_forward_eager = eager_autograd("GRUForward", gru_forward_impl, _setup_context, _backward)
forbid_double_backward(gru_backward, "fastgates::gru_backward")
