"""fastgates.GRU: a drop-in for torch.nn.GRU (one layer, one direction, for now)."""

from __future__ import annotations

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .._validation import check_gru_hx, check_layer_input
from ..ops.functional import _gru
from ._base import RNNLayerBase


class GRU(RNNLayerBase):
    r"""Gated recurrent unit layer with fused CPU kernels; a drop-in for ``torch.nn.GRU``.

    Same constructor, parameters (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
    ``bias_hh_l0``), initialisation, inputs and outputs as ``torch.nn.GRU``, so state dicts
    load both ways. Implemented so far: ``num_layers=1``, ``bidirectional=False``,
    float32 / float64 on CPU, padded (not packed) sequences; the other settings raise
    ``NotImplementedError``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        device, dtype: as for ``torch.nn.GRU``.

    Inputs: ``input, h_0``; outputs: ``output, h_n``, shaped as in torch.nn.
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
        if isinstance(input, PackedSequence):
            raise NotImplementedError(
                "fastgates.GRU: PackedSequence input is not supported yet (packed sequences "
                "come later); pass a padded tensor, or use torch.nn.GRU."
            )
        batched = check_layer_input(self, input)
        x = self._sequence_first(input, batched)
        batch = x.size(1)
        if hx is None:
            h0 = x.new_zeros((batch, self.hidden_size))
        else:
            check_gru_hx(self, hx, input, batched, batch)
            h0 = hx[0] if batched else hx
        b_ih, b_hh = self._biases()
        y, h_n = _gru(x, self.weight_ih_l0, self.weight_hh_l0, b_ih, b_hh, h0)
        if batched:
            h_n = h_n.unsqueeze(0)
        return self._output_layout(y, batched), h_n
