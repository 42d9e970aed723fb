"""fastgates.GRU: a drop-in for torch.nn.GRU (stacked and bidirectional too)."""

from __future__ import annotations

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .._validation import check_gru_hx
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
    direction. Input may be a padded tensor or a ``PackedSequence``; packed sequences run in
    the kernels in packed layout (no work on padding; the reverse direction runs within each
    sequence). float32 / float64 on the CPU.

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

    def forward(self, input: Tensor | PackedSequence,
                hx: Tensor | None = None) -> tuple[Tensor | PackedSequence, Tensor]:
        if isinstance(input, PackedSequence):
            output, (h_n,) = self._forward_packed(input, hx, _run_gru, check_gru_hx)
        else:
            output, (h_n,) = self._forward_tensor(input, hx, _run_gru, check_gru_hx)
        return output, h_n


def _run_gru(x, weights, states, batch_sizes, reverse):
    """One layer and direction over the whole sequence: (y, (h_n,))."""
    w_ih, w_hh, b_ih, b_hh, _ = weights
    y, h_n = _gru(x, w_ih, w_hh, b_ih, b_hh, *states, batch_sizes, reverse)
    return y, (h_n,)
