"""What fastgates.LSTM and fastgates.GRU share: construction, parameters, repr.

Mirrors torch.nn.RNNBase (torch/nn/modules/rnn.py): the same constructor checks and errors,
parameter names, shapes, registration order and initialisation, so that state dicts move both
ways and a seeded construction draws the same weights. It is a plain ``torch.nn.Module``, not
an ``RNNBase`` subclass, because torch.compile breaks the graph on ``RNNBase`` modules.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init


class RNNLayerBase(Module):
    __constants__ = [
        "mode",
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "proj_size",
    ]

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int

    def __init__(
        self,
        mode: str,
        gates: int,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size

        # torch.nn.RNNBase's checks, in its order, with its exception types and messages.
        if (
            not isinstance(dropout, numbers.Number)
            or not 0 <= dropout <= 1
            or isinstance(dropout, bool)
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] "
                "representing the probability of an element being "
                "zeroed"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last "
                "recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(
                f"batch_first should be of type bool, got: {type(batch_first).__name__}"
            )
        if not isinstance(input_size, int):
            raise TypeError(
                f"input_size should be of type int, got: {type(input_size).__name__}"
            )
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if not isinstance(hidden_size, int):
            raise TypeError(
                f"hidden_size should be of type int, got: {type(hidden_size).__name__}"
            )
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")

        # What torch.nn accepts but fastgates does not implement yet.
        name = f"fastgates.{mode}"
        if not isinstance(num_layers, int):
            raise TypeError(f"num_layers should be of type int, got: {type(num_layers).__name__}")
        if num_layers != 1:
            raise NotImplementedError(
                f"{name}: num_layers={num_layers} is not supported yet; only num_layers=1 is. "
                f"Stack single-layer {name} modules, or use torch.nn.{mode}."
            )
        if bidirectional:
            raise NotImplementedError(
                f"{name}: bidirectional=True is not supported yet; only unidirectional layers "
                f"are. Use torch.nn.{mode} for bidirectional layers."
            )
        if proj_size > 0:
            raise NotImplementedError(
                f"{name}: proj_size={proj_size} (LSTM projections) is not supported yet; only "
                "proj_size=0 is. Use torch.nn.LSTM for projections."
            )

        gate_size = gates * hidden_size
        self.weight_ih_l0 = Parameter(torch.empty((gate_size, input_size), **factory_kwargs))
        self.weight_hh_l0 = Parameter(torch.empty((gate_size, hidden_size), **factory_kwargs))
        names = ["weight_ih_l0", "weight_hh_l0"]
        if bias:
            self.bias_ih_l0 = Parameter(torch.empty(gate_size, **factory_kwargs))
            self.bias_hh_l0 = Parameter(torch.empty(gate_size, **factory_kwargs))
            names += ["bias_ih_l0", "bias_hh_l0"]
        self._flat_weights_names = names
        self._all_weights = [names]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/√H, 1/√H) for every parameter, in registration order (as torch.nn does)."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn (there it is a no-op on CPU too)."""

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)

    def _biases(self) -> tuple[Tensor | None, Tensor | None]:
        """(bias_ih_l0, bias_hh_l0), or Nones with bias=False (then, as in torch.nn, the
        attributes do not exist)."""
        if self.bias:
            return self.bias_ih_l0, self.bias_hh_l0
        return None, None

    def _sequence_first(self, input: Tensor, batched: bool) -> Tensor:
        """input as [T, B, I] (a view)."""
        if not batched:
            return input.unsqueeze(1)
        return input.transpose(0, 1) if self.batch_first else input

    def _output_layout(self, y: Tensor, batched: bool) -> Tensor:
        """y [T, B, H] back in the input's layout (a view), as torch.nn returns it."""
        if not batched:
            return y.squeeze(1)
        return y.transpose(0, 1) if self.batch_first else y
