"""fastgates.LSTM: a drop-in for torch.nn.LSTM (stacked and bidirectional too)."""

from __future__ import annotations

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .._validation import check_lstm_hx
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
    direction. ``proj_size > 0`` adds ``weight_hr_l{k}`` and makes h (outputs, h_0, h_n) of
    size ``proj_size``, as in torch.nn. Input may be a padded tensor or a ``PackedSequence``;
    packed sequences run in the kernels in packed layout (no work on padding; the reverse
    direction runs within each sequence). float32 / float64 on the CPU.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size, device, dtype: as for ``torch.nn.LSTM``.

    Inputs: ``input, (h_0, c_0)``; outputs: ``output, (h_n, c_n)``, shaped as in torch.nn:
    states ``(num_layers * num_directions, N, H_out)`` and ``(…, N, H)`` for c
    (``(num_layers * num_directions, ·)`` unbatched), ordered by layer, then direction;
    ``output`` ``(L, N, num_directions * H_out)`` (forward, then reverse features); H_out is
    ``proj_size`` with a projection, else ``hidden_size``.
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
        self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx, _run_lstm, check_lstm_hx)
        return self._forward_tensor(input, hx, _run_lstm, check_lstm_hx)


def _run_lstm(x, weights, states, batch_sizes, reverse):
    """One layer and direction over the whole sequence: (y, (h_n, c_n))."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    return _lstm(x, w_ih, w_hh, b_ih, b_hh, *states, w_hr, batch_sizes, reverse)
