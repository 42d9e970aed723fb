"""Thin wrappers over the CUDA kernels (``fastgates._C.cuda``) for the custom ops.

Each wrapper checks nothing itself (the binding checks every tensor: device, dtype, exact
shape, contiguity, no aliasing of outputs, and raises ValueError), passes the current CUDA
stream of the tensors' device, allocates the workspace with torch when none is given, and
returns once the kernels are queued on that stream. Kernel errors raise RuntimeError.
Shapes, layouts and semantics of every argument: ``csrc/cuda/kernels.h`` (the same
conventions as the CPU kernels, ``csrc/cpu/kernels.h``). ``strategy``: "auto" (the size
heuristic), "per_step" or "persistent" (ValueError if it cannot run the problem).

How an op uses them (T steps, B batch, I input, H hidden; G = 4 for LSTM, 3 for GRU; all
tensors contiguous, on one CUDA device, float32 or float64). Sequence arrays are [T, B, X] when
padded and [N, X] when packed (``batch_sizes``: PackedSequence.batch_sizes, a CPU int64 tensor,
N = its sum; the flattened padded case is N = T·B); ``reverse=True`` runs the reverse direction
(each packed sequence within its own length). The same semantics as the CPU kernels.

LSTM forward::

    x2 = x.reshape(N, I)                                 # x.data of a PackedSequence is [N, I]
    gates_x = torch.addmm(b_ih + b_hh, x2, w_ih.t())     # [N, 4H] ([T, B, 4H] padded: .view)
    y, h_n, c_n = (torch.empty(...) for ...)            # [N, H] ([T, B, H]), [B, H], [B, H]
    saved_gates, saved_c = [N, 4H], [N, H]               # or both None without autograd
    _cuda.lstm_forward(gates_x, w_hh, h0, c0, y, h_n, c_n, saved_gates, saved_c,
                       batch_sizes=batch_sizes, reverse=reverse)

LSTM backward (dy, dh_n, dc_n: zeros where no gradient flows; dy may also be one [H] row, the
gradient of every row, as from y.sum(); dh0 and dc0 may be None where they are not wanted,
and without dh0 the kernel skips the products with W_hh that only dh0 needs)::

    dgates = torch.empty_like(saved_gates); dh0, dc0 = torch.empty(B, H), torch.empty(B, H)
    _cuda.lstm_backward(w_hh, saved_gates, saved_c, c0, dy, dh_n, dc_n, dgates, dh0, dc0,
                        batch_sizes=batch_sizes, reverse=reverse)
    g = dgates.view(N, 4 * H)
    dx = (g @ w_ih).view_as(x)
    dw_ih = g.t() @ x2
    dw_hh = recurrent_weight_grad(dgates, h0, y, batch_sizes, reverse)
    db_ih = db_hh = g.sum(0)

``recurrent_weight_grad`` is ``fastgates.ops._common.recurrent_weight_grad`` (dgates and y as
the kernels use them, [T, B, ·] or [N, ·]): dgates_tᵀ times the h_{t-1} of each row (its row of
y at the step before in the direction of travel, or its row of h0 where its sequence starts);
padded and forward it is
``g.t() @ torch.cat([h0[None], y[:-1]]).reshape(T * B, H)``.

GRU forward (b_hh may be None)::

    gates_x = torch.addmm(b_ih, x2, w_ih.t())            # [N, 3H]
    _cuda.gru_forward(gates_x, w_hh, b_hh, h0, y, h_n, saved,   # saved: [N, 4H] or None
                      batch_sizes=batch_sizes, reverse=reverse)

GRU backward (dh0 may be None, as the LSTM's)::

    _cuda.gru_backward(w_hh, saved, h0, y, dy, dh_n, dgates_x, dgates_h, dh0,
                       batch_sizes=batch_sizes, reverse=reverse)
    gx, gh = dgates_x.view(N, 3 * H), dgates_h.view(N, 3 * H)
    dx = (gx @ w_ih).view_as(x);  dw_ih = gx.t() @ x2;  db_ih = gx.sum(0)
    dw_hh = recurrent_weight_grad(dgates_h, h0, y, batch_sizes, reverse);   db_hh = gh.sum(0)

LSTM with a projection (proj_size P; w_hr [P, H]): h0, y, h_n, dy, dh_n, dh0 are [·, P] and
w_hh is [4H, P]; the forward also takes ``w_hr=w_hr, saved_m=saved_m`` (saved_m [N, H],
needed even without autograd: the kernel's second phase reads m_t from it), the backward
``w_hr=w_hr, dh=dh`` (dh [N, P], out: dL/dh_t), and ``dw_hr = dh.t() @ saved_m``.

The outputs of one call must not alias its inputs or each other (dgates may not reuse the
memory of gates_x within one call, for example).
"""

from __future__ import annotations

import torch

from ._backend import C, has_cuda_kernels

DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
           torch.bfloat16: "bfloat16"}


def available() -> bool:
    """True if this build has the CUDA kernels and torch sees a CUDA device."""
    return has_cuda_kernels() and torch.cuda.is_available()


def _gpu():
    module = getattr(C(), "cuda", None)
    if module is None:
        raise RuntimeError("fastgates was built without the CUDA kernels (nvcc was not found at build time)")
    return module


def _device_index(tensor: torch.Tensor) -> int:
    if tensor.device.type != "cuda":
        raise ValueError(f"fastgates CUDA kernels: expected a CUDA tensor, got one on {tensor.device}")
    return tensor.device.index if tensor.device.index is not None else torch.cuda.current_device()


def _stream(device: int) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def launch_config(kernel: str, dtype: torch.dtype, batch: int, hidden_size: int, device: int,
                  strategy: str = "auto", packed_steps: int = 0) -> dict:
    """The launch configuration (strategy, grid, threads, shared and workspace bytes) the kernel
    would use on this device; ``kernel`` is lstm_forward, lstm_backward, gru_forward or gru_backward.
    ``packed_steps``: T of a packed call (its workspace also holds the step offsets), 0 when padded."""
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"fastgates CUDA kernels: dtype {dtype} is not supported (float32, float64, float16 or bfloat16)")
    return _gpu().launch_config(kernel, DTYPE_NAMES[dtype], batch, hidden_size, strategy, device, packed_steps)


def workspace_bytes(kernel: str, dtype: torch.dtype, batch: int, hidden_size: int, device: int,
                    strategy: str = "auto", packed_steps: int = 0) -> int:
    return launch_config(kernel, dtype, batch, hidden_size, device, strategy, packed_steps)["workspace_bytes"]


def _workspace(kernel: str, like: torch.Tensor, state: torch.Tensor, strategy: str, batch_sizes) -> torch.Tensor:
    """A workspace for a call whose [B, H] state (c0, or h0 of a GRU) is `state` (packed:
    T = len(batch_sizes))."""
    device = _device_index(like)
    packed_steps = 0 if batch_sizes is None else int(batch_sizes.shape[0])
    size = workspace_bytes(kernel, like.dtype, state.shape[0], state.shape[1], device, strategy, packed_steps)
    return torch.empty(size, dtype=torch.uint8, device=like.device)


def lstm_forward(gates_x, w_hh, h0, c0, y, h_n, c_n, saved_gates=None, saved_c=None, workspace=None,
                 strategy: str = "auto", *, batch_sizes=None, reverse: bool = False, w_hr=None,
                 saved_m=None) -> None:
    device = _device_index(gates_x)
    if workspace is None:
        workspace = _workspace("lstm_forward", gates_x, c0, strategy, batch_sizes)
    _gpu().lstm_forward(gates_x, w_hh, h0, c0, batch_sizes, reverse, y, h_n, c_n, saved_gates, saved_c, workspace,
                        strategy, device, _stream(device), w_hr=w_hr, saved_m=saved_m)


def lstm_backward(w_hh, saved_gates, saved_c, c0, dy, dh_n, dc_n, dgates, dh0, dc0, workspace=None,
                  strategy: str = "auto", *, batch_sizes=None, reverse: bool = False, w_hr=None, dh=None) -> None:
    device = _device_index(w_hh)
    if workspace is None:
        workspace = _workspace("lstm_backward", w_hh, c0, strategy, batch_sizes)
    _gpu().lstm_backward(w_hh, saved_gates, saved_c, c0, batch_sizes, reverse, dy, dh_n, dc_n, dgates, dh0, dc0,
                         workspace, strategy, device, _stream(device), w_hr=w_hr, dh=dh)


def gru_forward(gates_x, w_hh, b_hh, h0, y, h_n, saved=None, workspace=None, strategy: str = "auto", *,
                batch_sizes=None, reverse: bool = False) -> None:
    device = _device_index(gates_x)
    if workspace is None:
        workspace = _workspace("gru_forward", gates_x, h0, strategy, batch_sizes)
    _gpu().gru_forward(gates_x, w_hh, b_hh, h0, batch_sizes, reverse, y, h_n, saved, workspace, strategy, device,
                       _stream(device))


def gru_backward(w_hh, saved, h0, y, dy, dh_n, dgates_x, dgates_h, dh0, workspace=None,
                 strategy: str = "auto", *, batch_sizes=None, reverse: bool = False) -> None:
    device = _device_index(w_hh)
    if workspace is None:
        workspace = _workspace("gru_backward", w_hh, h0, strategy, batch_sizes)
    _gpu().gru_backward(w_hh, saved, h0, y, batch_sizes, reverse, dy, dh_n, dgates_x, dgates_h, dh0, workspace,
                        strategy, device, _stream(device))
