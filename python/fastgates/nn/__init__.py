"""fastgates' drop-in layers for torch.nn.LSTM and torch.nn.GRU."""

from .gru import GRU
from .lstm import LSTM

__all__ = ["LSTM", "GRU"]
