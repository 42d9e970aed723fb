"""fastgates' PyTorch operators.

``lstm`` / ``gru``: functional forms of one layer (checked arguments, autograd).
``lstm_forward`` / ``lstm_backward`` / ``gru_forward`` / ``gru_backward``: the custom ops
``torch.ops.fastgates.*`` they are built on (registered when this package is imported).
"""

from .functional import gru, lstm
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward

__all__ = ["lstm", "gru", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward"]
