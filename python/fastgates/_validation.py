"""Argument checks for the fastgates layers and functional ops.

Every check raises before any kernel runs, with a message that names the argument, its shape
(or dtype / device) and what was expected. Where torch.nn.LSTM / torch.nn.GRU raise a clear
error for the same input, the exception type and the start of the message are torch's, so code
that catches torch.nn's errors keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ._module_attributes import module_attribute

SUPPORTED_DTYPES = (torch.float32, torch.float64)
# The CUDA kernels also take the 16-bit types (computed in float32).
SUPPORTED_CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# "meta" runs the shape-only (fake) implementations: useful for shape inference, no kernels.
# "cuda" when this build has the CUDA kernels (check_supported_device).
SUPPORTED_DEVICE_TYPES = ("cpu", "meta")


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def require_tensor(where: str, name: str, value: object) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(value).__name__}")


def check_supported_dtype(where: str, name: str, t: Tensor) -> None:
    supported = SUPPORTED_CUDA_DTYPES if t.device.type == "cuda" else SUPPORTED_DTYPES
    if t.dtype not in supported:
        raise TypeError(
            f"{where}: {name} has dtype {t.dtype}, which fastgates does not support on "
            f"{t.device.type}; its kernels take {', '.join(str(d) for d in supported)}. Convert "
            "the input and the module (e.g. .float()), or use torch.nn for other dtypes."
        )


def check_same_dtype(where: str, name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    if t.dtype != ref.dtype:
        raise ValueError(
            f"{where}: {name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; "
            "all tensors of one call must have the same dtype."
        )


def check_supported_device(where: str, name: str, t: Tensor) -> None:
    if t.device.type == "cuda":
        from . import _backend

        if not _backend.has_cuda_kernels():
            raise NotImplementedError(
                f"{where}: {name} is on device {t.device}, but this build of fastgates has no CUDA "
                "kernels (nvcc was not found when it was built); rebuild with the CUDA toolkit "
                "installed, or keep the tensors on the CPU."
            )
        return
    if t.device.type not in SUPPORTED_DEVICE_TYPES:
        raise NotImplementedError(
            f"{where}: {name} is on device {t.device}; fastgates has CPU and CUDA kernels only."
        )


def check_same_device(where: str, name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    if t.device != ref.device:
        raise RuntimeError(
            f"{where}: {name} is on device {t.device} but {ref_name} is on device {ref.device}; "
            "all tensors of one call must be on the same device."
        )


def check_shape(where: str, name: str, t: Tensor, expected: Sequence[int], exc=ValueError) -> None:
    if _shape(t) != tuple(expected):
        raise exc(f"{where}: {name} has shape {_shape(t)}, expected {tuple(expected)}.")


# ---------------------------------------------------------------------------------------------
# Functional ops: x [T, B, I], torch.nn weight shapes, states [B, H].


def check_sequence_args(
    where: str,
    gates: int,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    states: Sequence[tuple[str, Tensor]],
) -> None:
    """Checks the arguments of ``fastgates.ops.lstm`` (gates=4) / ``fastgates.ops.gru`` (gates=3)."""
    named = [("x", x), ("w_ih", w_ih), ("w_hh", w_hh), *states]
    for name, t in named:
        require_tensor(where, name, t)
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            require_tensor(where, name, b)
            named.append((name, b))

    check_supported_dtype(where, "x", x)
    check_supported_device(where, "x", x)
    for name, t in named[1:]:
        check_same_dtype(where, name, t, "x", x)
        check_same_device(where, name, t, "x", x)

    if x.dim() != 3:
        raise ValueError(f"{where}: x must be 3-D (T, B, I), got shape {_shape(x)}.")
    if w_hh.dim() != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ValueError(
            f"{where}: w_hh has shape {_shape(w_hh)}, expected ({gates}*H, H) for a hidden size H."
        )
    steps, batch, input_size = x.shape
    hidden = w_hh.shape[1]
    check_shape(where, "w_ih", w_ih, (gates * hidden, input_size))
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            check_shape(where, name, b, (gates * hidden,))
    for name, t in states:
        check_shape(where, name, t, (batch, hidden))


# ---------------------------------------------------------------------------------------------
# Layers: torch.nn's input conventions and, where torch.nn has clear ones, its errors.


def _expected_input(module, batched: bool) -> str:
    if not batched:
        return f"(L, {module.input_size})"
    if module.batch_first:
        return f"(N, L, {module.input_size}) for batch_first=True"
    return f"(L, N, {module.input_size}) for batch_first=False"


def check_layer_input(module, input: object) -> bool:
    """Checks a layer's input; returns whether it is batched (3-D)."""
    where = module._get_name()
    require_tensor(where, "input", input)
    if input.dim() not in (2, 3):
        raise ValueError(
            f"{where}: Expected input to be 2D or 3D, got {input.dim()}D instead "
            f"(input of shape {_shape(input)}; expected (L, N, H_in), (N, L, H_in) with "
            "batch_first=True, or (L, H_in) unbatched)."
        )
    batched = input.dim() == 3
    _check_input_and_parameters(module, where, input)
    if input.size(-1) != module.input_size:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {module.input_size}, got "
            f"{input.size(-1)} ({where}: input of shape {_shape(input)}, expected "
            f"{_expected_input(module, batched)})."
        )
    time_dim = 1 if (batched and module.batch_first) else 0
    if input.size(time_dim) == 0:
        raise RuntimeError(
            f"Expected sequence length to be larger than 0 in RNN ({where}: input of shape "
            f"{_shape(input)} has length 0 along the time dimension {time_dim}; expected "
            f"{_expected_input(module, batched)} with L >= 1)."
        )
    return batched


def _check_input_and_parameters(module, where: str, input: Tensor, dtype_error=ValueError) -> None:
    """dtype and device of the input (or a PackedSequence's data) and of every parameter.
    ``dtype_error``: the exception type torch.nn raises for a dtype mismatch of this input."""
    weight = module_attribute(module, "weight_ih_l0")
    dtype = weight.dtype
    # The common case, all consistent, in one pass; any mismatch falls to the checks below,
    # which say which argument is wrong.
    if (weight.is_cpu and dtype in SUPPORTED_DTYPES and input.dtype is dtype and input.is_cpu
            and all(cpu_tensor_of(module_attribute(module, name), dtype) for name in module._flat_weights_names)):
        return
    if input.dtype != weight.dtype:
        raise dtype_error(
            f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
        )
    check_supported_dtype(where, "input", input)
    check_same_device(where, "input", input, "the parameters", weight)
    check_supported_device(where, "input", input)
    for name in module._flat_weights_names[1:]:  # e.g. after assigning one parameter anew
        param = getattr(module, name)
        require_tensor(where, name, param)
        check_same_dtype(where, name, param, "weight_ih_l0", weight)
        check_same_device(where, name, param, "weight_ih_l0", weight)


def cpu_tensor_of(t: object, dtype: torch.dtype) -> bool:
    """Whether t is a CPU tensor of this dtype: for the common-case checks of every call, which
    tell CPU tensors by is_cpu and dtypes by identity (torch keeps one object per dtype), since
    reading and comparing .device took a third of a one-step cell call's check."""
    return isinstance(t, Tensor) and t.dtype is dtype and t.is_cpu


def check_packed_input(module, input: PackedSequence) -> None:
    """Checks a PackedSequence input: data (N, H_in) and CPU int64 batch_sizes that are
    non-increasing and at least 1 (as pack_padded_sequence makes them)."""
    where = module._get_name()
    data, batch_sizes = input.data, input.batch_sizes
    require_tensor(where, "input.data", data)
    if data.dim() != 2:
        raise RuntimeError(
            f"input must have 2 dimensions, got {data.dim()} ({where}: the data of a "
            f"PackedSequence has shape {_shape(data)}, expected (N, {module.input_size}))"
        )
    # torch.nn.GRU checks the dtype of packed input (ValueError); torch.nn.LSTM does not, and
    # fails in its first matmul with a RuntimeError.
    _check_input_and_parameters(module, where, data,
                                dtype_error=RuntimeError if module.mode == "LSTM" else ValueError)
    if data.size(-1) != module.input_size:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {module.input_size}, got "
            f"{data.size(-1)} ({where}: PackedSequence data of shape {_shape(data)})."
        )
    require_tensor(where, "input.batch_sizes", batch_sizes)
    if (batch_sizes.dim() != 1 or batch_sizes.dtype != torch.int64 or batch_sizes.device.type != "cpu"
            or batch_sizes.numel() == 0):
        raise ValueError(
            f"{where}: the PackedSequence's batch_sizes must be a non-empty 1-D int64 CPU tensor, "
            f"got shape {_shape(batch_sizes)}, dtype {batch_sizes.dtype}, device {batch_sizes.device}"
        )
    if bool((batch_sizes < 1).any()) or bool((batch_sizes[1:] > batch_sizes[:-1]).any()):
        raise ValueError(
            f"{where}: the PackedSequence's batch_sizes must be at least 1 and non-increasing "
            f"(as torch.nn.utils.rnn.pack_padded_sequence makes them), got {batch_sizes.tolist()}"
        )
    if int(batch_sizes.sum()) != data.size(0):
        raise ValueError(
            f"{where}: the PackedSequence's batch_sizes add up to {int(batch_sizes.sum())} rows, "
            f"but its data has shape {_shape(data)}"
        )


def _state_layers(module) -> int:
    """num_layers * num_directions: the leading size of a layer's states."""
    return module.num_layers * (2 if module.bidirectional else 1)


def _state_shapes(module, batched: bool, batch: int) -> list[tuple[int, ...]]:
    """The shapes torch.nn expects of a layer's initial states, h (and c)."""
    layers = _state_layers(module)
    return [(layers, batch, size) if batched else (layers, size) for size in module._state_sizes()]


def _is_state(t: object, input: Tensor, shape: tuple[int, ...]) -> bool:
    """Whether t passes _check_state: the checks' common case, in one expression."""
    return isinstance(t, Tensor) and t.shape == shape and t.dtype == input.dtype and t.device == input.device


def _check_state(where, name, label, t, input, batched, layers, batch, size, msg_prefix):
    """One initial state: a tensor of the input's dtype and device, shaped like torch.nn's
    ((layers, batch, size), or (layers, size) unbatched; layers = num_layers * num_directions)."""
    require_tensor(where, name, t)
    check_same_dtype(where, name, t, "input", input)
    check_same_device(where, name, t, "input", input)
    if batched:
        expected = (layers, batch, size)
        layout = "(num_layers * num_directions, N, H_out)"
        of_input = f"input of shape {_shape(input)}"
    else:
        expected = (layers, size)
        layout = "(num_layers * num_directions, H_out)"
        of_input = f"unbatched input of shape {_shape(input)}"
    if _shape(t) != expected:
        raise RuntimeError(
            f"{msg_prefix} {expected}, got {list(t.shape)} ({where}: {name} ({label}) must have "
            f"shape {layout} = {expected} for {of_input})."
        )


def check_lstm_hx(module, hx: object, input: Tensor, batched: bool, batch: int) -> None:
    """Checks an LSTM's hx = (h_0, c_0) against its (checked) input."""
    if (isinstance(hx, (tuple, list)) and len(hx) == 2
            and all(_is_state(t, input, shape) for t, shape in zip(hx, _state_shapes(module, batched, batch)))):
        return
    where = module._get_name()
    if not isinstance(hx, (tuple, list)):
        raise TypeError(
            f"{where}: hx must be a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}"
            + (f" of shape {_shape(hx)}" if isinstance(hx, Tensor) else "")
        )
    if len(hx) != 2:
        raise RuntimeError(
            f"{where}: hx must be a tuple (h_0, c_0) of two tensors (lstm expects two hidden "
            f"states), got a {type(hx).__name__} of {len(hx)}"
        )
    for i, t in enumerate(hx):
        require_tensor(where, f"hx[{i}]", t)
    dims = (hx[0].dim(), hx[1].dim())
    want = 3 if batched else 2
    if dims != (want, want):
        raise RuntimeError(
            f"For batched 3-D input, hx and cx should also be 3-D but got ({dims[0]}-D, "
            f"{dims[1]}-D) tensors" if batched else
            f"For unbatched 2-D input, hx and cx should also be 2-D but got ({dims[0]}-D, "
            f"{dims[1]}-D) tensors"
        )
    for i, (label, size) in enumerate(zip(("h_0", "c_0"), module._state_sizes(), strict=True)):
        _check_state(where, f"hx[{i}]", label, hx[i], input, batched, _state_layers(module),
                     batch, size, f"Expected hidden[{i}] size")


def check_gru_hx(module, hx: object, input: Tensor, batched: bool, batch: int) -> None:
    """Checks a GRU's hx = h_0 against its (checked) input."""
    if _is_state(hx, input, _state_shapes(module, batched, batch)[0]):
        return
    where = module._get_name()
    if not isinstance(hx, Tensor):
        raise TypeError(f"{where}: hx must be a torch.Tensor (h_0), got {type(hx).__name__}")
    want = 3 if batched else 2
    if hx.dim() != want:
        raise RuntimeError(
            f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor" if batched
            else f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor"
        )
    _check_state(where, "hx", "h_0", hx, input, batched, _state_layers(module), batch,
                 module.hidden_size, "Expected hidden size")
