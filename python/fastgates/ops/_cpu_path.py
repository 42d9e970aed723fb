"""The ops' path for CPU tensors: ``fastgates._C``'s kernels, which compute the input
projection themselves, with their scratch buffers and thread count. Same signatures as
``_external_projection`` (the CUDA path): the CPU kernels' arguments (``csrc/cpu/kernels.h``)
without gates_x, workspace and num_threads."""

from __future__ import annotations

from .. import _backend
from ._common import steps


def lstm_forward(x, w_ih, b_ih, w_hh, b_hh, w_hr, h0, c0, batch_sizes, reverse, y, h_n, c_n, saved_gates, saved_c,
                 saved_m) -> None:
    threads = _backend.num_threads()
    hidden = c0.shape[1]
    workspace = _backend.workspace("lstm_forward", x.dtype, steps(x, batch_sizes), h0.shape[0], x.shape[-1], hidden,
                                   threads, 0 if w_hr is None else w_hr.shape[0])
    # gates_x is saved_gates: when training, the activations overwrite the pre-activations in
    # place; in inference (None) the kernel projects a chunk of steps at a time into its
    # workspace (kernels.h). The kernel sums b_ih and b_hh itself.
    _backend.C().lstm_forward(x, w_ih, b_ih, w_hh, b_hh, w_hr, h0, c0, batch_sizes, reverse, saved_gates, y, h_n,
                              c_n, saved_gates, saved_c, saved_m, workspace, threads)


def lstm_backward(w_hh, w_hr, saved_gates, saved_c, c0, batch_sizes, reverse, dy, dh_n, dc_n, dgates, dh, dh0,
                  dc0, db) -> None:
    threads = _backend.num_threads()
    workspace = _backend.workspace("lstm_backward", w_hh.dtype, steps(saved_c, batch_sizes), c0.shape[0], 0,
                                   c0.shape[1], threads, 0 if w_hr is None else w_hr.shape[0])
    _backend.C().lstm_backward(w_hh, w_hr, saved_gates, saved_c, c0, batch_sizes, reverse, dy, dh_n, dc_n, dgates,
                               dh, dh0, dc0, workspace, threads, db)


def gru_forward(x, w_ih, b_ih, w_hh, b_hh, h0, batch_sizes, reverse, y, h_n, saved) -> None:
    threads = _backend.num_threads()
    hidden = h0.shape[1]
    workspace = _backend.workspace("gru_forward", x.dtype, steps(x, batch_sizes), h0.shape[0], x.shape[-1], hidden,
                                   threads)
    # gates_x None: when training, the input projection goes into `saved`, whose r, z, n
    # overwrite it in place; in inference the kernel projects a chunk of steps at a time into
    # its workspace (kernels.h).
    _backend.C().gru_forward(x, w_ih, b_ih, w_hh, b_hh, h0, batch_sizes, reverse, None, y, h_n, saved, workspace,
                             threads)


def gru_backward(w_hh, saved, h0, y, batch_sizes, reverse, dy, dh_n, dgates_x, dgates_h, dh0, db_ih, db_hh) -> None:
    threads = _backend.num_threads()
    workspace = _backend.workspace("gru_backward", w_hh.dtype, steps(y, batch_sizes), h0.shape[0], 0, h0.shape[1],
                                   threads)
    _backend.C().gru_backward(w_hh, saved, h0, y, batch_sizes, reverse, dy, dh_n, dgates_x, dgates_h, dh0, workspace,
                              threads, db_ih, db_hh)
