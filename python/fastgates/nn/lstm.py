"""fastgates.LSTM: a drop-in for torch.nn.LSTM (stacked and bidirectional too)."""

from __future__ import annotations

from torch import Tensor

from .._validation import check_layer_input, check_lstm_hx
from ..ops.functional import _lstm
from ._base import RNNLayerBase


class LSTM(RNNLayerBase):
    r"""Long short-term memory layer with fused CPU kernels; a drop-in for ``torch.nn.LSTM``.

    Same constructor, parameters (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``, and ``*_reverse`` ones for the backward direction; layer ``k > 0`` takes
    ``hidden_size * num_directions`` inputs), initialisation, inputs and outputs as
    ``torch.nn.LSTM``, so state dicts load both ways. ``num_layers``, ``bidirectional`` and
    ``dropout`` (between layers, in training mode only, drawn with
    ``torch.nn.functional.dropout``) work as in torch.nn: one fused kernel call per layer and
    direction, the reverse direction on the time-reversed sequence. Implemented so far:
    ``proj_size=0``, float32 / float64 on CPU, padded (not packed) sequences; projections and
    ``PackedSequence`` input raise ``NotImplementedError``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size, device, dtype: as for ``torch.nn.LSTM``.

    Inputs: ``input, (h_0, c_0)``; outputs: ``output, (h_n, c_n)``, shaped as in torch.nn:
    states ``(num_layers * num_directions, N, H)`` (``(num_layers * num_directions, H)``
    unbatched), ordered by layer, then direction; ``output`` ``(L, N, num_directions * H)``
    (forward, then reverse features).
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
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            "LSTM", 4, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype,
        )

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        batched = check_layer_input(self, input)
        x = self._sequence_first(input, batched)
        if hx is not None:
            check_lstm_hx(self, hx, input, batched, x.size(1))
        initial = self._initial_states(x, hx, 2, batched)
        y, finals = self._run_layers(x, initial, _lstm)
        h_n, c_n = self._final_states(finals, batched)
        return self._output_layout(y, batched), (h_n, c_n)

