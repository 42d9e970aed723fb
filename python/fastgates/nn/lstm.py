"""fastgates.LSTM: a drop-in for torch.nn.LSTM (one layer, one direction, for now)."""

from __future__ import annotations

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .._validation import check_layer_input, check_lstm_hx
from ..ops.functional import _lstm
from ._base import RNNLayerBase


class LSTM(RNNLayerBase):
    r"""Long short-term memory layer with fused CPU kernels; a drop-in for ``torch.nn.LSTM``.

    Same constructor, parameters (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
    ``bias_hh_l0``), initialisation, inputs and outputs as ``torch.nn.LSTM``, so state dicts
    load both ways. Implemented so far: ``num_layers=1``, ``bidirectional=False``,
    ``proj_size=0``, float32 / float64 on CPU, padded (not packed) sequences; the other
    settings raise ``NotImplementedError``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size, device, dtype: as for ``torch.nn.LSTM``.

    Inputs: ``input, (h_0, c_0)``; outputs: ``output, (h_n, c_n)``, shaped as in torch.nn.
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
        if isinstance(input, PackedSequence):
            raise NotImplementedError(
                "fastgates.LSTM: PackedSequence input is not supported yet (packed sequences "
                "come later); pass a padded tensor, or use torch.nn.LSTM."
            )
        batched = check_layer_input(self, input)
        x = self._sequence_first(input, batched)
        batch = x.size(1)
        if hx is None:
            h0 = x.new_zeros((batch, self.hidden_size))
            c0 = x.new_zeros((batch, self.hidden_size))
        else:
            check_lstm_hx(self, hx, input, batched, batch)
            # (1, B, H) -> (B, H); unbatched, (1, H) already is (B=1, H).
            h0, c0 = (hx[0][0], hx[1][0]) if batched else (hx[0], hx[1])
        b_ih, b_hh = self._biases()
        y, (h_n, c_n) = _lstm(x, self.weight_ih_l0, self.weight_hh_l0, b_ih, b_hh, h0, c0)
        if batched:
            h_n, c_n = h_n.unsqueeze(0), c_n.unsqueeze(0)
        return self._output_layout(y, batched), (h_n, c_n)
