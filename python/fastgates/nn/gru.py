"""fastgates.GRU: a drop-in for torch.nn.GRU (stacked and bidirectional too)."""

from __future__ import annotations

from torch import Tensor

from .._validation import check_gru_hx, check_layer_input
from ..ops.functional import _gru
from ._base import RNNLayerBase


class GRU(RNNLayerBase):
    r"""Gated recurrent unit layer with fused CPU kernels; a drop-in for ``torch.nn.GRU``.

    Same constructor, parameters (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``, and ``*_reverse`` ones for the backward direction; layer ``k > 0`` takes
    ``hidden_size * num_directions`` inputs), initialisation, inputs and outputs as
    ``torch.nn.GRU``, so state dicts load both ways. ``num_layers``, ``bidirectional`` and
    ``dropout`` (between layers, in training mode only, drawn with
    ``torch.nn.functional.dropout``) work as in torch.nn: one fused kernel call per layer and
    direction, the reverse direction on the time-reversed sequence. Implemented so far:
    float32 / float64 on CPU, padded (not packed) sequences; ``PackedSequence`` input raises
    ``NotImplementedError``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        device, dtype: as for ``torch.nn.GRU``.

    Inputs: ``input, h_0``; outputs: ``output, h_n``, shaped as in torch.nn: states
    ``(num_layers * num_directions, N, H)`` (``(num_layers * num_directions, H)`` unbatched),
    ordered by layer, then direction; ``output`` ``(L, N, num_directions * H)`` (forward, then
    reverse features).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        **kwargs,
    ) -> None:
        # torch.nn.GRU takes **kwargs too, and rejects proj_size with this ValueError.
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if kwargs:
            raise TypeError(
                f"GRU.__init__() got an unexpected keyword argument '{next(iter(kwargs))}'"
            )
        super().__init__(
            "GRU", 3, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, 0, device, dtype,
        )

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batched = check_layer_input(self, input)
        x = self._sequence_first(input, batched)
        if hx is not None:
            check_gru_hx(self, hx, input, batched, x.size(1))
        initial = self._initial_states(x, None if hx is None else (hx,), 1, batched)
        y, finals = self._run_layers(x, initial, _gru_step)
        (h_n,) = self._final_states(finals, batched)
        return self._output_layout(y, batched), h_n


def _gru_step(x, w_ih, w_hh, b_ih, b_hh, h0):
    """One layer and direction over the whole sequence: (y, (h_n,))."""
    y, h_n = _gru(x, w_ih, w_hh, b_ih, b_hh, h0)
    return y, (h_n,)
