"""The LSTM custom ops ``fastgates::lstm_forward`` and ``fastgates::lstm_backward``.

Shapes (torch.nn layout; gate order i, f, g, o): x [T, B, I] padded, or [N, I] packed with
``batch_sizes`` (torch's PackedSequence.batch_sizes, on the CPU); w_ih [4H, I], w_hh [4H, K],
b_ih / b_hh [4H] or None, w_hr [P, H] or None (a projection: K = P, else K = H), h0 [B, K],
c0 [B, H]. ``reverse`` runs the sequence backwards (within each sequence when packed). The
input projection runs inside the forward kernel; every weight / input gradient is a large
GEMM (torch's, or fastgates' own: ``_common.matmul``); the kernels in ``fastgates._C`` run the
sequential part and sum the bias gradient (on CUDA a torch sum does).
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
    matmul,
    no_saved_tensors_error,
    recurrent_weight_grad,
    saved_array,
    kernels as _kernels,
    sequence_shape,
)

GATES = 4


def _sizes(x: Tensor, w_hh: Tensor, w_hr: Tensor | None, h0: Tensor) -> tuple[int, int, int]:
    """(batch B, hidden H, recurrent size K)."""
    hidden = w_hh.shape[0] // GATES
    return h0.shape[0], hidden, hidden if w_hr is None else w_hr.shape[0]


def lstm_forward_impl(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    batch_sizes: Tensor | None,
    reverse: bool,
    save_for_backward: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns (y [·, K], h_n [B, K], c_n [B, H], saved_gates [·, 4H], saved_c [·, H],
    saved_m [·, H]), "·" being x's leading dimensions.

    saved_* are what the backward op needs; all are 0-sized when ``save_for_backward`` is
    False, and saved_m (the projection's input) is 0-sized without a projection.
    """
    _, hidden, _ = _sizes(x, w_hh, w_hr, h0)
    projected = w_hr is not None
    saved_gates = saved_array(x, GATES * hidden) if save_for_backward else x.new_empty(EMPTY)
    saved_c = saved_array(x, hidden) if save_for_backward else x.new_empty(EMPTY)
    saved_m = saved_array(x, hidden) if save_for_backward and projected else x.new_empty(EMPTY)
    saved = (saved_gates, saved_c, saved_m if projected else None) if save_for_backward else None
    y, h_n, c_n = lstm_run(x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse, saved)
    return y, h_n, c_n, saved_gates, saved_c, saved_m


def lstm_run(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    batch_sizes: Tensor | None,
    reverse: bool,
    saved: tuple[Tensor, Tensor, Tensor | None] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The kernels into new (y, h_n, c_n); with ``saved`` = (saved_gates, saved_c, saved_m or
    None without a projection), also the activations the backward needs. Eager inference calls
    this directly (functional.py): without the op's three 0-sized outputs, one tensor
    allocation each (about 1.3 µs)."""
    batch, hidden, k = _sizes(x, w_hh, w_hr, h0)
    y = x.new_empty(sequence_shape(x, k))
    h_n = x.new_empty((batch, k))
    c_n = x.new_empty((batch, hidden))
    if is_empty(x, batch, hidden):
        h_n.copy_(h0)
        c_n.copy_(c0)
        return y, h_n, c_n
    saved_gates, saved_c, saved_m = saved if saved is not None else (None, None, None)
    _kernels(x).lstm_forward(
        x.contiguous(),
        w_ih.contiguous(),
        None if b_ih is None else b_ih.contiguous(),
        w_hh.contiguous(),
        None if b_hh is None else b_hh.contiguous(),
        None if w_hr is None else w_hr.contiguous(),
        h0.contiguous(),
        c0.contiguous(),
        batch_sizes,
        reverse,
        y,
        h_n,
        c_n,
        saved_gates,
        saved_c,
        saved_m,
    )
    return y, h_n, c_n


# The op; eager inference calls lstm_run directly (functional.py).
lstm_forward = torch.library.custom_op("fastgates::lstm_forward", lstm_forward_impl, mutates_args=(),
                                       device_types=("cpu", "cuda"))


@lstm_forward.register_fake
def _(x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse, save_for_backward):
    batch, hidden, k = _sizes(x, w_hh, w_hr, h0)
    return (
        x.new_empty(sequence_shape(x, k)),
        x.new_empty((batch, k)),
        x.new_empty((batch, hidden)),
        x.new_empty(sequence_shape(x, GATES * hidden) if save_for_backward else EMPTY),
        x.new_empty(sequence_shape(x, hidden) if save_for_backward else EMPTY),
        x.new_empty(sequence_shape(x, hidden) if save_for_backward and w_hr is not None else EMPTY),
    )


def lstm_backward_impl(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    y: Tensor,
    saved_gates: Tensor,
    saved_c: Tensor,
    saved_m: Tensor,
    batch_sizes: Tensor | None,
    reverse: bool,
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Tensor,
    grad_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns (dx, dw_ih, dw_hh, db, dw_hr, dh0, dc0); db is the gradient of b_ih and of b_hh.

    ``grad_mask`` = [x, w_ih, w_hh, bias, w_hr, h0, c0]: the gradients to compute; the others
    are 0-sized (dw_hr always is without a projection). Without dh0 the kernel skips the products
    with W_hh only dh0 needs (at T = 1, all of them). A mask of the first five entries wants both
    (checked_grad_mask).
    """
    need_x, need_w_ih, need_w_hh, need_b, need_w_hr, need_h0, need_c0 = checked_grad_mask(
        grad_mask, 7, 2, "fastgates::lstm_backward")
    batch, hidden, k = _sizes(x, w_hh, w_hr, h0)
    projected = w_hr is not None
    (dgates,) = gate_gradients(x, GATES * hidden)
    dh = x.new_empty(sequence_shape(x, k) if projected else EMPTY)
    dh0 = x.new_empty((batch, k) if need_h0 else EMPTY)
    dc0 = x.new_empty((batch, hidden) if need_c0 else EMPTY)
    db = x.new_empty((GATES * hidden,) if need_b else EMPTY)
    if is_empty(x, batch, hidden):
        dgates.zero_()
        dh.zero_()
        db.zero_()
        if need_h0:
            dh0.copy_(dh_n)
        if need_c0:
            dc0.copy_(dc_n)
    else:
        _kernels(x).lstm_backward(
            w_hh.contiguous(),
            None if w_hr is None else w_hr.contiguous(),
            saved_gates.contiguous(),
            saved_c.contiguous(),
            c0.contiguous(),
            batch_sizes,
            reverse,
            kernel_sequence_gradient(dy),
            dh_n.contiguous(),
            dc_n.contiguous(),
            dgates,
            dh if projected else None,
            dh0 if need_h0 else None,
            dc0 if need_c0 else None,
            db if need_b else None,
        )
    dx, dw_ih = input_side_grads(dgates, x, w_ih, need_x, need_w_ih)
    dw_hh = recurrent_weight_grad(dgates, h0, y, batch_sizes, reverse) if need_w_hh else x.new_empty(EMPTY)
    if projected and need_w_hr:
        dw_hr = matmul(dh.reshape(-1, k), saved_m.reshape(-1, hidden), transpose_a=True)
    else:
        dw_hr = x.new_empty(EMPTY)
    return dx, dw_ih, dw_hh, db, dw_hr, dh0, dc0


# The op; lstm_backward_impl is also called directly by eager backward passes (_backward).
lstm_backward = torch.library.custom_op("fastgates::lstm_backward", lstm_backward_impl, mutates_args=(),
                                        device_types=("cpu", "cuda"))


@lstm_backward.register_fake
def _(x, w_ih, w_hh, w_hr, h0, c0, y, saved_gates, saved_c, saved_m, batch_sizes, reverse, dy, dh_n,
      dc_n, grad_mask):
    need_x, need_w_ih, need_w_hh, need_b, need_w_hr, need_h0, need_c0 = checked_grad_mask(
        grad_mask, 7, 2, "fastgates::lstm_backward")
    batch, hidden, k = _sizes(x, w_hh, w_hr, h0)
    input_size = x.shape[-1]
    return (
        x.new_empty(x.shape if need_x else EMPTY),
        x.new_empty((GATES * hidden, input_size) if need_w_ih else EMPTY),
        x.new_empty((GATES * hidden, k) if need_w_hh else EMPTY),
        x.new_empty((GATES * hidden,) if need_b else EMPTY),
        x.new_empty((k, hidden) if need_w_hr and w_hr is not None else EMPTY),
        x.new_empty((batch, k) if need_h0 else EMPTY),
        x.new_empty((batch, hidden) if need_c0 else EMPTY),
    )


def _setup_context(ctx, inputs, output):
    x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0, batch_sizes, reverse, save_for_backward = inputs
    y, _h_n, _c_n, saved_gates, saved_c, saved_m = output
    ctx.mark_non_differentiable(saved_gates, saved_c, saved_m)
    # Outputs that did not reach the loss arrive as None rather than as zeros: autograd would
    # otherwise fill a zero tensor the size of each saved array on every backward.
    ctx.set_materialize_grads(False)
    ctx.has_saved = save_for_backward
    ctx.reverse = reverse
    ctx.save_for_backward(x, w_ih, w_hh, w_hr, h0, c0, y, saved_gates, saved_c, saved_m, batch_sizes)


def _backward(ctx, dy, dh_n, dc_n, _dsaved_gates, _dsaved_c, _dsaved_m):
    if not ctx.has_saved:
        raise no_saved_tensors_error("fastgates::lstm_forward")
    x, w_ih, w_hh, w_hr, h0, c0, y, saved_gates, saved_c, saved_m, batch_sizes = ctx.saved_tensors
    (need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_w_hr, need_h0, need_c0,
     *_) = ctx.needs_input_grad
    dy, dh_n, dc_n = grad_or_zeros(dy, y), grad_or_zeros(dh_n, h0), grad_or_zeros(dc_n, c0)
    skip = backward_may_skip_dispatcher(x, w_ih, w_hh, w_hr, h0, c0, dy, dh_n, dc_n)
    op = lstm_backward_impl if skip else lstm_backward
    dx, dw_ih, dw_hh, db, dw_hr, dh0, dc0 = op(
        x, w_ih, w_hh, w_hr, h0, c0, y, saved_gates, saved_c, saved_m, batch_sizes, ctx.reverse, dy, dh_n, dc_n,
        [need_x, need_w_ih, need_w_hh, need_b_ih or need_b_hh, need_w_hr, need_h0, need_c0],
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
        dw_hr if need_w_hr else None,
        dh0 if need_h0 else None,
        dc0 if need_c0 else None,
        None,
        None,
        None,
    )


lstm_forward.register_autograd(_backward, setup_context=_setup_context)
# The same op for plain eager calls that need a gradient (functional.py).
lstm_forward_eager = eager_autograd("LSTMForward", lstm_forward_impl, _setup_context, _backward)
forbid_double_backward(lstm_backward, "fastgates::lstm_backward")
