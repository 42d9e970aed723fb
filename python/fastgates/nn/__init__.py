"""fastgates' drop-in layers and cells for torch.nn.LSTM, GRU, LSTMCell and GRUCell."""

from .cells import GRUCell, LSTMCell
from .gru import GRU
from .lstm import LSTM

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell"]
