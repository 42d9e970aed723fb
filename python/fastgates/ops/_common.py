"""Pieces shared by the LSTM and GRU custom ops."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import _backend, _reused_arrays

EMPTY = (0,)  # shape of an output that was not asked for


def sequence_shape(x: Tensor, width: int) -> tuple[int, ...]:
    """Shape of a sequence array with ``width`` features laid out like x: [T, B, width] when x
    is padded [T, B, I], [N, width] when x is packed [N, I]."""
    shape = x.shape
    # Indexed, not sliced: slicing a torch.Size builds a new one (about 0.3 µs, several times
    # a call).
    return (shape[0], shape[1], width) if len(shape) == 3 else (*shape[:-1], width)


def saved_array(x: Tensor, width: int) -> Tensor:
    """A new sequence array (sequence_shape) for activations a forward saves for its backward;
    large ones on the CPU reuse memory of earlier steps (_reused_arrays)."""
    return _reused_arrays.empty(sequence_shape(x, width), x)


def plain_eager(*tensors: Tensor | None) -> bool:
    """Whether a call that autograd need not record may run an op's implementation directly.

    The dispatcher's path through a Python custom op (autograd wrapper, redispatch, backend
    wrapper) costs about 60 µs a call on this project's machine, more than the kernels of a
    one-step LSTM at H = 64 take. It is skipped only in plain eager execution on CPU or CUDA
    tensors: never while torch.compile traces (this test is its first, so dynamo sees a
    constant), nor under a dispatch mode (FakeTensor, export, make_fx, functionalization), a
    torch function mode, a tensor subclass, a functorch transform, the jit tracer or the
    profiler, all of which must see the op itself. The tests are private torch hooks (present in
    torch 2.13); a torch of the declared range that lacks one always takes the op.
    """
    try:
        return not (
            torch.compiler.is_compiling()
            or torch._C._len_torch_dispatch_stack() > 0
            or torch._C._is_torch_function_mode_enabled()
            or torch._C._are_functorch_transforms_active()
            or torch.autograd._profiler_enabled()
            or torch._C._get_tracing_state() is not None
            or torch.overrides.has_torch_function(tensors)  # None entries count as plain
            or not (tensors[0].is_cpu or tensors[0].is_cuda)
        )
    except AttributeError:
        return False


def backward_may_skip_dispatcher(*tensors: Tensor | None) -> bool:
    """Whether a forward op's autograd formula may call the backward op's implementation
    directly: in plain eager execution (plain_eager), and only without create_graph, since with
    it the backward op's own formula must be there to refuse a double backward."""
    return not torch.is_grad_enabled() and plain_eager(*tensors)


def kernels(x: Tensor):
    """The kernels for x's device: the CPU kernels, or the CUDA path (which takes the input
    projection from a torch GEMM); both modules have the same functions and signatures."""
    cpu_path, external_projection = _kernel_modules()
    return external_projection if external_projection.uses_external_projection(x) else cpu_path


@functools.cache
def _kernel_modules():
    """(_cpu_path, _external_projection), imported on first use (they import this module) and
    kept: an import statement on every call cost about 1 µs."""
    from . import _cpu_path, _external_projection

    return _cpu_path, _external_projection


def gate_gradients(x: Tensor, *widths: int) -> list[Tensor]:
    """Arrays laid out like x with these feature widths, for a backward op's gate gradients:
    on the CPU reused per thread (_backend.gradient_scratch), elsewhere new."""
    shapes = [sequence_shape(x, width) for width in widths]
    if x.device.type == "cpu":
        return _backend.gradient_scratch(x, *shapes)
    return [x.new_empty(shape) for shape in shapes]


def steps(x: Tensor, batch_sizes: Tensor | None) -> int:
    """T of a padded [T, B, I] or packed [N, I] sequence."""
    return x.shape[0] if batch_sizes is None else batch_sizes.numel()


def matmul(a: Tensor, b: Tensor, transpose_a: bool = False, out: Tensor | None = None) -> Tensor:
    """op(a) @ b, op(a) = a.t() when transpose_a; with ``out``, out += op(a) @ b in place.

    On the CPU in float32 and float64 this is fastgates' own GEMM when ``_backend.own_gemm_for``
    says so (by default with the AVX-512 kernels on AMD processors, where torch's MKL is far from
    the peak, for large products), else torch's. a and b are 2-D; op(a) is [m, k] and b [k, n].
    A new result of a large product on the CPU (the weight gradients) takes memory of earlier
    steps (_reused_arrays)."""
    a_op = a.t() if transpose_a else a
    m, n, k = a_op.shape[0], b.shape[1], b.shape[0]
    if not (a.is_cpu and a.dtype in _backend.KERNEL_DTYPES and b.dtype == a.dtype
            and a.numel() > 0 and b.numel() > 0 and _backend.own_gemm_for(m, n, k)):
        if out is not None:
            return out.addmm_(a_op, b)
        if _reused_arrays.is_large((m, n), a):
            return torch.mm(a_op, b, out=_reused_arrays.empty((m, n), a))
        return torch.mm(a_op, b)
    a, b = a.contiguous(), b.contiguous()
    c = _reused_arrays.empty((m, n), a) if out is None else out
    threads = _backend.num_threads()
    workspace = _backend.matmul_workspace(a.dtype, m, n, k, transpose_a, threads)
    _backend.C().matmul(a, b, c, transpose_a, out is not None, workspace, threads)
    return c


def input_side_grads(dgates_x: Tensor, x: Tensor, w_ih: Tensor, need_x: bool,
                     need_w_ih: bool) -> tuple[Tensor, Tensor]:
    """(dx, dW_ih) from the gradient of the input projection x W_ihᵀ + b, as large GEMMs;
    0-sized where not needed. x is padded [T, B, I] or packed [N, I]. (The kernels sum db.)"""
    input_size = x.shape[-1]
    d2d = dgates_x.reshape(-1, dgates_x.shape[-1])
    dx = matmul(d2d, w_ih).view(x.shape) if need_x else x.new_empty(EMPTY)
    dw_ih = matmul(d2d, x.reshape(-1, input_size), transpose_a=True) if need_w_ih else x.new_empty(EMPTY)
    return dx, dw_ih


def previous_rows(batch_sizes: Tensor, reverse: bool) -> Tensor:
    """For each row of a packed sequence, the row of ``cat([h0, y])`` that holds its h_{t-1}:
    the same batch row of the step before (in the direction of travel) when that step has it,
    else its initial state."""
    steps = batch_sizes.numel()
    batch = int(batch_sizes[0])
    offsets = torch.cumsum(batch_sizes, 0) - batch_sizes
    step = torch.repeat_interleave(torch.arange(steps), batch_sizes)
    row = torch.arange(step.numel()) - offsets[step]
    before = step + 1 if reverse else step - 1
    clamped = before.clamp(0, steps - 1)
    continues = (before >= 0) & (before < steps) & (batch_sizes[clamped] > row)
    return torch.where(continues, batch + offsets[clamped] + row, row)


def recurrent_weight_grad(dgates: Tensor, h0: Tensor, y: Tensor, batch_sizes: Tensor | None,
                          reverse: bool) -> Tensor:
    """dW_hh = Σ_t dgates_tᵀ h_{t-1}, h_{t-1} the state each row continued (h0 where a
    sequence starts), for padded [T, B, ·] or packed [N, ·] sequences, either direction."""
    gate_width = dgates.shape[-1]
    hidden = h0.shape[1]
    if batch_sizes is not None:
        h_prev = torch.cat([h0, y], 0).index_select(0, previous_rows(batch_sizes, reverse).to(h0.device))
        return matmul(dgates, h_prev, transpose_a=True)
    steps = dgates.shape[0]
    if steps == 0:
        return h0.new_zeros((gate_width, hidden))
    # Padded: without concatenating h0 and y. Step `first` starts from h0.
    dw = matmul(dgates[steps - 1 if reverse else 0], h0, transpose_a=True)
    if steps > 1:  # the other steps' views only then: a one-step call would make two for nothing
        rest, before = (dgates[:-1], y[1:]) if reverse else (dgates[1:], y[:-1])
        matmul(rest.reshape(-1, gate_width), before.reshape(-1, hidden), transpose_a=True, out=dw)  # no copy of dw
    return dw


def is_empty(x: Tensor, *sizes: int) -> bool:
    """True when a kernel must not run on the sequence x (padded [T, B, I] or packed [N, I])
    with these other sizes: the kernels need each of them and x's T and B (or N) >= 1; I may be
    0 (no input projection). x's sizes are read only when it has no elements."""
    return 0 in sizes or (x.numel() == 0 and 0 in x.shape[:-1])


def grad_or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    """Autograd passes None for outputs that did not reach the loss; the kernels need tensors.
    Zeros stand in: one row of zeros expanded to like's shape, so that no array the size of a
    sequence is filled (the kernels read the row itself for every row of dy,
    kernel_sequence_gradient; dh_n and dc_n are made contiguous, small)."""
    if grad is not None:
        return grad
    return like.new_zeros(like.shape[-1:]).expand(like.shape)


def kernel_sequence_gradient(dy: Tensor) -> Tensor:
    """dy as the backward kernels (CPU and CUDA) take it. Where every row of dy is the same row
    in memory (an expanded tensor: the gradient of y.sum() or y.mean(), or grad_or_zeros'
    zeros), that one [K] row, which the kernel reads for every row (``dy_one_row`` in
    csrc/cpu/kernels.h and csrc/cuda/kernels.h) instead of a [T, B, K] copy that it would
    stream (README, "A gradient of y that is one row"). Otherwise dy with contiguous rows, a
    copy of a large non-contiguous one in memory of earlier steps (_reused_arrays)."""
    if dy.dim() > 1 and dy.numel() > 0 and not any(dy.stride()[:-1]):
        return dy[(0,) * (dy.dim() - 1)].contiguous()
    if dy.is_contiguous():
        return dy
    if _reused_arrays.is_large(dy.shape, dy):
        return _reused_arrays.empty(dy.shape, dy).copy_(dy)
    return dy.contiguous()


def checked_grad_mask(grad_mask: Sequence[bool], n: int, states: int, op: str) -> list[bool]:
    """The backward op's grad_mask as n entries, of which the last ``states`` are the initial
    states'. A mask without those (n - states entries, the ops' form before they had them) wants
    every state gradient, so that graphs compiled or exported with that form still run: torch's
    compile caches do not see a change in an op's autograd formula."""
    if len(grad_mask) == n - states:
        return [*grad_mask, *[True] * states]
    if len(grad_mask) != n:
        raise ValueError(f"{op}: grad_mask must have {n} entries, got {len(grad_mask)}")
    return list(grad_mask)


def eager_autograd(name: str, impl, setup_context, backward):
    """``apply`` of an autograd.Function that runs a forward op's implementation directly, with
    the op's own autograd formula (``setup_context`` and ``backward``, as given to
    register_autograd): for calls that need a gradient in plain eager execution (plain_eager).

    It skips what the dispatcher adds to a Python custom op in training: the autograd wrapper,
    its redispatch, and torch.library's re-binding of every argument to the op's schema
    (``fill_defaults``, which builds the schema's argument list twice per argument): about
    100–125 µs of a training step at T = 1 on this project's development machine. The results
    are the op's: the same implementation, the same formula, the same saved tensors. A double
    backward still reaches the backward op's refusal, since ``backward`` calls the op itself
    when autograd records it (backward_may_skip_dispatcher)."""

    def forward(ctx, *args):
        output = impl(*args)
        setup_context(ctx, args, output)
        return output

    # forward takes ctx itself: a separate setup_context staticmethod would make
    # Function.apply bind every call's arguments to forward's signature (inspect.signature).
    function = type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                        "backward": staticmethod(backward)})
    return function.apply


def forbid_double_backward(op, name: str) -> None:
    """Register an autograd formula for a backward op that says it cannot be differentiated.

    Every forward input (x, weights, biases, initial states) is also an input of the matching
    backward op, so any attempt at a second derivative reaches this formula and fails loudly
    instead of silently treating the first gradient as a constant.
    """

    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise RuntimeError(
            f"fastgates does not support double backward: {name} (the gradient of the "
            "fastgates forward op) is not differentiable. Higher-order gradients of fastgates "
            "layers are not implemented; use torch.nn.LSTM / torch.nn.GRU for those."
        )

    op.register_autograd(backward, setup_context=setup_context)


def no_saved_tensors_error(name: str) -> RuntimeError:
    return RuntimeError(
        f"{name} was called with save_for_backward=False, so it kept nothing for the backward "
        "pass and cannot be differentiated. Call it with save_for_backward=True "
        "(fastgates.ops.lstm/gru and the fastgates layers do so whenever a gradient is needed)."
    )
