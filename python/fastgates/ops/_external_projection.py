"""The ops' path for kernels that take the input projection from the caller: the CUDA kernels.

On CUDA the input projection x W_ihᵀ + b is one torch GEMM (cuBLAS) before the recurrent
kernel, which then runs the sequential part (``csrc/cuda/kernels.h``). The functions here take
the CPU kernels' arguments in the CPU kernels' order (``fastgates._C``, ``csrc/cpu/kernels.h``,
minus gates_x, workspace and threads), so the ops call either path the same way, and return
what the CPU kernels write into their output arguments.

``kernels`` is a namespace with ``lstm_forward``, ``lstm_backward``, ``gru_forward`` and
``gru_backward`` with the signatures of ``fastgates._cuda``: the GPU kernels, or, in the tests,
the same kernel sources compiled for the CPU through the CUDA emulation (``emulated()``), which
runs this whole path on CPU tensors.
"""

from __future__ import annotations

import contextlib
import types

import torch
from torch import Tensor

from .. import _backend
from .._cuda import DTYPE_NAMES

_emulating = False


def _kernels_for(x: Tensor):
    if x.device.type == "cuda":
        from .. import _cuda

        return _cuda
    return emulated_kernels()


def uses_external_projection(x: Tensor) -> bool:
    """True for tensors that run through this path: CUDA tensors, and CPU tensors while
    ``emulate_cuda_on_cpu()`` is active."""
    return x.is_cuda or (_emulating and x.is_cpu)


@contextlib.contextmanager
def emulate_cuda_on_cpu():
    """For tests: the ops run CPU tensors through the CUDA path, with the CUDA kernel sources
    compiled for the CPU (the emulation; every CUDA thread is a CPU thread, so small shapes
    only). Not thread-safe; not for use outside tests."""
    global _emulating
    before, _emulating = _emulating, True
    try:
        yield
    finally:
        _emulating = before


def emulated_kernels() -> types.SimpleNamespace:
    """``fastgates._C.cuda_emulated`` behind the keyword arguments of ``fastgates._cuda``."""
    emulated = _backend.C().cuda_emulated

    def kernel(name: str, state_from: str):
        def run(*, strategy: str = "auto", **args):
            batch_sizes = args.get("batch_sizes")
            state = args[state_from]
            config = emulated.launch_config(name, DTYPE_NAMES[args["w_hh"].dtype], state.shape[0], state.shape[1],
                                            strategy, packed_steps=0 if batch_sizes is None else batch_sizes.numel())
            workspace = torch.empty(max(int(config["workspace_bytes"]), 1), dtype=torch.uint8)
            getattr(emulated, name)(**args, workspace=workspace, strategy=strategy)
        return run

    return types.SimpleNamespace(
        lstm_forward=kernel("lstm_forward", "c0"),
        lstm_backward=kernel("lstm_backward", "c0"),
        gru_forward=kernel("gru_forward", "h0"),
        gru_backward=kernel("gru_backward", "h0"),
    )


def _combined_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    """b_ih + b_hh (what the LSTM's input projection adds, as _project's addmm bias); None
    without biases."""
    if b_ih is None or b_hh is None:
        return b_hh if b_ih is None else b_ih
    return b_ih + b_hh


def _project(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """x W_ihᵀ + bias over all rows (x [T, B, I] or [N, I]), as one GEMM."""
    x2d = x.reshape(-1, x.shape[-1])
    gates = torch.mm(x2d, w_ih.t()) if bias is None else torch.addmm(bias, x2d, w_ih.t())
    return gates.view(*x.shape[:-1], w_ih.shape[0])


def lstm_forward(x, w_ih, b_ih, w_hh, b_hh, w_hr, h0, c0, batch_sizes, reverse, y, h_n, c_n, saved_gates, saved_c,
                 saved_m) -> None:
    if w_hr is not None and saved_m is None:
        # The projected kernel's second phase reads m_t from saved_m (csrc/cuda/kernels.h).
        saved_m = x.new_empty(*y.shape[:-1], c0.shape[1])
    _kernels_for(x).lstm_forward(
        gates_x=_project(x, w_ih, _combined_bias(b_ih, b_hh)), w_hh=w_hh, h0=h0, c0=c0, y=y, h_n=h_n, c_n=c_n,
        saved_gates=saved_gates, saved_c=saved_c, batch_sizes=batch_sizes, reverse=reverse, w_hr=w_hr,
        saved_m=saved_m)


def lstm_backward(w_hh, w_hr, saved_gates, saved_c, c0, batch_sizes, reverse, dy, dh_n, dc_n, dgates, dh, dh0,
                  dc0, db) -> None:
    # dh0 / dc0 None: not wanted (the kernels then skip the products only dh0 needs).
    _kernels_for(w_hh).lstm_backward(
        w_hh=w_hh, saved_gates=saved_gates, saved_c=saved_c, c0=c0, dy=dy, dh_n=dh_n, dc_n=dc_n, dgates=dgates,
        dh0=dh0, dc0=dc0, batch_sizes=batch_sizes, reverse=reverse, w_hr=w_hr, dh=dh)
    _column_sums(dgates, db)


def gru_forward(x, w_ih, b_ih, w_hh, b_hh, h0, batch_sizes, reverse, y, h_n, saved) -> None:
    _kernels_for(x).gru_forward(
        gates_x=_project(x, w_ih, b_ih), w_hh=w_hh, b_hh=b_hh, h0=h0, y=y, h_n=h_n, saved=saved,
        batch_sizes=batch_sizes, reverse=reverse)


def gru_backward(w_hh, saved, h0, y, batch_sizes, reverse, dy, dh_n, dgates_x, dgates_h, dh0, db_ih, db_hh) -> None:
    _kernels_for(w_hh).gru_backward(
        w_hh=w_hh, saved=saved, h0=h0, y=y, dy=dy, dh_n=dh_n, dgates_x=dgates_x, dgates_h=dgates_h, dh0=dh0,
        batch_sizes=batch_sizes, reverse=reverse)
    _column_sums(dgates_x, db_ih)
    _column_sums(dgates_h, db_hh)


def _column_sums(dgates: Tensor, out: Tensor | None) -> None:
    """The bias gradients, which the CPU kernels sum themselves: dgates summed over all rows,
    into out (None: not wanted)."""
    if out is not None:
        torch.sum(dgates.reshape(-1, dgates.shape[-1]), 0, out=out)
