"""fastgates.LSTMCell and fastgates.GRUCell: drop-ins for torch.nn.LSTMCell / torch.nn.GRUCell.

Mirrors torch.nn.RNNCellBase (torch/nn/modules/rnn.py): the same constructor, parameter names
(``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), shapes, registration order and
initialisation, so state dicts move both ways and a seeded construction draws the same weights.
``forward`` runs one time step of the fused whole-sequence kernels (T = 1), so autograd and
torch.compile work as for the layers. Plain ``torch.nn.Module``s, like the layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from .._module_attributes import module_attribute
from .._validation import (
    SUPPORTED_DTYPES,
    _shape,
    check_same_device,
    check_supported_device,
    check_supported_dtype,
    cpu_tensor_of,
    require_tensor,
)
from ..ops._cell_step import gru_cell_step, lstm_cell_step


class RNNCellLayerBase(Module):
    __constants__ = ["input_size", "hidden_size", "bias"]

    input_size: int
    hidden_size: int
    bias: bool
    weight_ih: Tensor
    weight_hh: Tensor

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(
            torch.empty((num_chunks * hidden_size, input_size), **factory_kwargs)
        )
        self.weight_hh = Parameter(
            torch.empty((num_chunks * hidden_size, hidden_size), **factory_kwargs)
        )
        if bias:
            self.bias_ih = Parameter(torch.empty(num_chunks * hidden_size, **factory_kwargs))
            self.bias_hh = Parameter(torch.empty(num_chunks * hidden_size, **factory_kwargs))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if "bias" in self.__dict__ and self.bias is not True:
            s += ", bias={bias}"
        return s.format(**self.__dict__)

    def reset_parameters(self) -> None:
        """U(-1/√H, 1/√H) for every parameter, in registration order (as torch.nn does)."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def to_torch(self) -> Module:
        """The equivalent ``torch.nn`` cell: same arguments, a copy of the weights (strict
        ``load_state_dict``), same device, dtype, training mode and ``requires_grad`` flags."""
        from ..convert import _copy_into

        cls = getattr(torch.nn, type(self).__name__)
        return _copy_into(
            self, lambda **factory: cls(self.input_size, self.hidden_size, self.bias, **factory)
        )

    # -- forward checks: torch.nn's exception types (and its message where it has one) --------

    def _check_input(self, input: object) -> bool:
        """Checks the input; returns whether it is batched (2-D)."""
        where = self._get_name()
        require_tensor(where, "input", input)
        if input.dim() not in (1, 2):
            raise ValueError(f"{where}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        return input.dim() == 2

    def _weights(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh), read once per call (module_attribute)."""
        return (module_attribute(self, "weight_ih"), module_attribute(self, "weight_hh"),
                module_attribute(self, "bias_ih"), module_attribute(self, "bias_hh"))

    def _is_common_step(self, x: Tensor, states: Sequence[object],
                        weights: tuple[Tensor | None, ...]) -> bool:
        """Whether x [B, I] and the states [B, H] are CPU tensors of the parameters' dtype
        (a supported one) with the module's sizes: the check of a well-formed call, in one pass
        (as the layers check theirs); each Python operation here costs about 0.1 µs of a
        one-step call."""
        weight, weight_hh, bias_ih, bias_hh = weights
        dtype = weight.dtype
        if not (isinstance(x, Tensor) and x.dim() == 2 and x.dtype is dtype and x.is_cpu
                and weight.is_cpu and dtype in SUPPORTED_DTYPES and cpu_tensor_of(weight_hh, dtype)
                and (bias_ih is None or cpu_tensor_of(bias_ih, dtype))
                and (bias_hh is None or cpu_tensor_of(bias_hh, dtype))):
            return False
        batch, width = x.shape
        state_shape = (batch, self.hidden_size)
        return width == self.input_size and all(
            [cpu_tensor_of(t, dtype) and t.shape == state_shape for t in states])

    def _check_step(self, x: Tensor, states: list[tuple[str, Tensor]],
                    weights: tuple[Tensor | None, ...]) -> None:
        """x [B, I] and states [B, H] (unbatched ones unsqueezed already) against the
        parameters ``weights`` (_weights): dtype, device, sizes."""
        # The common case, all consistent, in one pass; any mismatch falls to the checks below,
        # which say which argument is wrong.
        if self._is_common_step(x, [t for _, t in states], weights):
            return
        weight = weights[0]
        batch = x.shape[0]
        where = self._get_name()
        params = [("weight_ih", weight), ("weight_hh", weights[1])]
        if weights[2] is not None:
            params += [("bias_ih", weights[2]), ("bias_hh", weights[3])]
        for name, t in params[1:] + [("input", x)] + states:
            require_tensor(where, name, t)
            if t.dtype != weight.dtype:
                raise RuntimeError(
                    f"{where}: {name} has dtype {t.dtype} but weight_ih has dtype "
                    f"{weight.dtype}; convert the input (input.to({weight.dtype})) or the "
                    f"module (module.to({t.dtype}))."
                )
        check_supported_dtype(where, "input", x)
        check_supported_device(where, "input", x)
        for name, t in params + states:
            check_same_device(where, name, t, "input", x)
        if x.size(1) != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {x.size(1)} expected {self.input_size} "
                f"({where}: input of shape {_shape(x)})"
            )
        for i, (name, t) in enumerate(states):
            if t.dim() != 2 or t.size(0) != batch:
                raise RuntimeError(
                    f"Input batch size {batch} doesn't match hidden{i} batch size "
                    f"{t.size(0) if t.dim() else '()'} ({where}: {name} has shape "
                    f"{_shape(t)}, expected {(batch, self.hidden_size)})"
                )
            if t.size(1) != self.hidden_size:
                raise RuntimeError(
                    f"hidden{i} has inconsistent hidden_size: got {t.size(1)}, expected "
                    f"{self.hidden_size} ({where}: {name} has shape {_shape(t)})"
                )


class LSTMCell(RNNCellLayerBase):
    r"""A long short-term memory cell with the fused CPU kernels; a drop-in for
    ``torch.nn.LSTMCell``.

    Args:
        input_size, hidden_size, bias, device, dtype: as for ``torch.nn.LSTMCell``.

    Inputs: ``input, (h_0, c_0)``: input ``(N, H_in)`` or unbatched ``(H_in)``; states
    ``(N, H)`` or ``(H)``, zeros when ``hx`` is None. Outputs: ``(h_1, c_1)``, shaped like the
    states. float32 / float64 on the CPU.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        weights = self._weights()
        if type(hx) is tuple and len(hx) == 2 and self._is_common_step(input, hx, weights):
            return lstm_cell_step(input, *weights, *hx)
        batched = self._check_input(input)
        where = self._get_name()
        if hx is not None:
            if not isinstance(hx, (tuple, list)):
                raise TypeError(
                    f"{where}: hx must be a tuple (h_0, c_0) of two tensors, got "
                    f"{type(hx).__name__}"
                )
            for idx, value in enumerate(hx):
                require_tensor(where, f"hx[{idx}]", value)
                if value.dim() not in (1, 2):
                    raise ValueError(
                        f"{where}: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead"
                    )
            if len(hx) != 2:
                raise RuntimeError(
                    f"lstm_cell expects two hidden states ({where}: hx has {len(hx)})"
                )
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            zeros = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
            h0 = c0 = zeros
        else:
            h0, c0 = hx if batched else (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        self._check_step(x, [("hx[0]", h0), ("hx[1]", c0)], weights)
        h1, c1 = lstm_cell_step(x, *weights, h0, c0)
        if not batched:
            return h1.squeeze(0), c1.squeeze(0)
        return h1, c1


class GRUCell(RNNCellLayerBase):
    r"""A gated recurrent unit cell with the fused CPU kernels; a drop-in for
    ``torch.nn.GRUCell``.

    Args:
        input_size, hidden_size, bias, device, dtype: as for ``torch.nn.GRUCell``.

    Inputs: ``input, hx``: input ``(N, H_in)`` or unbatched ``(H_in)``; ``hx`` ``(N, H)`` or
    ``(H)``, zeros when None. Output: ``h'``, shaped like ``hx``. float32 / float64 on the CPU.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        weights = self._weights()
        if hx is not None and self._is_common_step(input, (hx,), weights):
            return gru_cell_step(input, *weights, hx)
        batched = self._check_input(input)
        where = self._get_name()
        if hx is not None:
            require_tensor(where, "hx", hx)
            if hx.dim() not in (1, 2):
                raise ValueError(
                    f"{where}: Expected hidden to be 1D or 2D, got {hx.dim()}D instead"
                )
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            h0 = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h0 = hx if batched else hx.unsqueeze(0)
        self._check_step(x, [("hx", h0)], weights)
        h1 = gru_cell_step(x, *weights, h0)
        return h1 if batched else h1.squeeze(0)
