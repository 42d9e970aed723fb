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
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module, Parameter, init
from torch.nn.utils.rnn import PackedSequence

from .. import _reused_arrays
from .._module_attributes import module_attribute
from .._validation import check_layer_input, check_packed_input
from ..ops._common import plain_eager


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

        if not isinstance(num_layers, int):
            raise TypeError(f"num_layers should be of type int, got: {type(num_layers).__name__}")

        # torch.nn's parameters: per layer, per direction, in this order and with these names.
        num_directions = 2 if bidirectional else 1
        gate_size = gates * hidden_size
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names = []
        self._all_weights = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else real_hidden_size * num_directions
            for direction in range(num_directions):
                suffix = "_reverse" if direction == 1 else ""
                shapes = [(gate_size, layer_input_size), (gate_size, real_hidden_size)]
                param_names = ["weight_ih_l{}{}", "weight_hh_l{}{}"]
                if bias:
                    shapes += [(gate_size,), (gate_size,)]
                    param_names += ["bias_ih_l{}{}", "bias_hh_l{}{}"]
                if proj_size > 0:
                    shapes += [(proj_size, hidden_size)]
                    param_names += ["weight_hr_l{}{}"]
                param_names = [n.format(layer, suffix) for n in param_names]
                for pname, shape in zip(param_names, shapes, strict=True):
                    setattr(self, pname, Parameter(torch.empty(shape, **factory_kwargs)))
                self._flat_weights_names.extend(param_names)
                self._all_weights.append(param_names)
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

    def to_torch(self) -> Module:
        """The equivalent ``torch.nn.LSTM`` / ``torch.nn.GRU``: same constructor arguments, a
        copy of the weights (strict ``load_state_dict``), same device, dtype, training mode and
        ``requires_grad`` flags; no random numbers drawn."""
        from ..convert import _copy_into

        cls = getattr(torch.nn, self.mode)
        # torch.nn.GRU rejects a proj_size argument, even 0.
        projection = {"proj_size": self.proj_size} if self.proj_size > 0 else {}

        def build(**factory):
            return cls(
                self.input_size, self.hidden_size, num_layers=self.num_layers, bias=self.bias,
                batch_first=self.batch_first, dropout=self.dropout,
                bidirectional=self.bidirectional, **projection, **factory,
            )

        return _copy_into(self, build)

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

    @property
    def _num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _direction_weights(self, index: int) -> tuple[Tensor | None, ...]:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of layer ``index // D``, direction ``index % D``;
        biases are None with bias=False and w_hr without a projection (then, as in torch.nn,
        those attributes do not exist)."""
        names = self._all_weights[index]  # [w_ih, w_hh, (b_ih, b_hh if bias), (w_hr if proj_size)]
        biases = (module_attribute(self, names[2]), module_attribute(self, names[3])) if self.bias else (None, None)
        w_hr = module_attribute(self, names[-1]) if self.proj_size > 0 else None
        return (module_attribute(self, names[0]), module_attribute(self, names[1]), *biases, w_hr)

    def _state_sizes(self) -> tuple[int, ...]:
        """Feature sizes of the states: (h,) for a GRU; (h, c) for an LSTM, h being proj_size
        with a projection."""
        if self.mode == "GRU":
            return (self.hidden_size,)
        return (self.proj_size if self.proj_size > 0 else self.hidden_size, self.hidden_size)

    def _initial_states(self, x: Tensor, hx: Sequence[Tensor] | None, batch: int,
                        batched: bool) -> list[tuple[Tensor, ...]]:
        """Per (layer, direction), its initial states as [B, ·] tensors (views of hx, whose
        tensors are (L*D, B, ·), or (L*D, ·) unbatched; zeros without hx)."""
        n = self.num_layers * self._num_directions
        if hx is None:
            return [tuple(x.new_zeros((batch, size)) for size in self._state_sizes())] * n
        if batched:
            return [tuple(t[i] for t in hx) for i in range(n)]
        return [tuple(t[i : i + 1] for t in hx) for i in range(n)]  # B = 1

    def _final_states(self, finals: list[tuple[Tensor, ...]], batched: bool) -> tuple[Tensor, ...]:
        """Per (layer, direction) [B, ·] final states -> (L*D, B, ·) (or (L*D, ·) unbatched)
        per state, layer-major, then direction, as torch.nn orders them."""
        out = []
        for states in zip(*finals, strict=True):
            if not batched:
                out.append(states[0] if len(states) == 1 else torch.cat(states, 0))
            elif len(states) == 1:
                out.append(states[0].unsqueeze(0))
            else:
                out.append(torch.stack(states, 0))
        return tuple(out)

    def _run_layers(self, x: Tensor, initial: list[tuple[Tensor, ...]], run: Callable,
                    batch_sizes: Tensor | None) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        """All layers and directions over x ([T, B, I] padded, or [N, I] packed with
        ``batch_sizes``): one call of ``run`` (a whole-sequence functional op:
        ``run(x, weights, states, batch_sizes, reverse) -> (y, final states)``) per layer and
        direction; the kernels run the reverse direction backwards in time (within each
        sequence when packed). A layer's output is [forward, reverse] along the features;
        dropout (training only) on the output of every layer but the last, as in torch.nn.
        Returns (y, finals)."""
        directions = self._num_directions
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                y, final = run(x, self._direction_weights(index), initial[index], batch_sizes, direction == 1)
                outputs.append(y)
                finals.append(final)
            x = outputs[0] if directions == 1 else torch.cat(outputs, -1)
        return x, finals

    def _forward_tensor(self, input: Tensor, hx: Sequence[Tensor] | None, run: Callable,
                        check_hx: Callable) -> tuple[Tensor, tuple[Tensor, ...]]:
        """forward() for a padded (or unbatched) tensor input, ``hx`` as a sequence of states."""
        batched = check_layer_input(self, input)
        x = self._sequence_first(input, batched)
        if hx is not None:
            check_hx(self, hx, input, batched, x.size(1))
            hx = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
        initial = self._initial_states(x, hx, x.size(1), batched)
        y, finals = self._run_layers(x, initial, run, None)
        return self._output_layout(y, batched), self._final_states(finals, batched)

    def _forward_packed(self, input: PackedSequence, hx: Sequence[Tensor] | None, run: Callable,
                        check_hx: Callable) -> tuple[PackedSequence, tuple[Tensor, ...]]:
        """forward() for a PackedSequence: the kernels run on the packed rows (no padding), and,
        as in torch.nn, hx is taken in the caller's batch order and the final states are
        returned in it."""
        check_packed_input(self, input)
        x, batch_sizes, sorted_indices, unsorted_indices = input
        batch = int(batch_sizes[0])
        if hx is not None:
            check_hx(self, hx, x, True, batch)
            hx = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
            if sorted_indices is not None:
                hx = tuple(t.index_select(1, sorted_indices) for t in hx)
        initial = self._initial_states(x, hx, batch, True)
        y, finals = self._run_layers(x, initial, run, batch_sizes)
        states = self._final_states(finals, True)
        if unsorted_indices is not None:
            states = tuple(t.index_select(1, unsorted_indices) for t in states)
        return PackedSequence(y, batch_sizes, sorted_indices, unsorted_indices), states

    def _sequence_first(self, input: Tensor, batched: bool) -> Tensor:
        """input as [T, B, I]: a view, or with batch_first a contiguous copy, made once here for
        the forward kernels and the backward's weight-gradient GEMM (a transposed view was
        copied by each of them), in reused memory when large: glibc maps a new array of that
        size afresh in some processes, a page fault per 4 KiB (_reused_arrays)."""
        if not batched:
            return input.unsqueeze(1)
        if not self.batch_first:
            return input
        x = input.transpose(0, 1)
        if x.is_contiguous():
            return x
        if _reused_arrays.is_large(x.shape, x) and plain_eager(x):
            return _reused_arrays.empty(x.shape, x).copy_(x)  # autograd records the copy
        return x.contiguous()

    def _output_layout(self, y: Tensor, batched: bool) -> Tensor:
        """y [T, B, H] back in the input's layout (a view), as torch.nn returns it."""
        if not batched:
            return y.squeeze(1)
        return y.transpose(0, 1) if self.batch_first else y
