"""The shapes the suite measures: the full sweeps, the quick subset, and explicit cases.

A :class:`Case` is one shape of one cell: a layer (``lstm``, ``gru``: torch.nn.LSTM / GRU and
fastgates'), or a cell module called once per step in a Python loop (``lstmcell``,
``grucell``: torch.nn.LSTMCell / GRUCell and fastgates', the way a decoder or an agent runs
them); each case is measured in every requested mode (forward, train) and for every
implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

# Each cell's module, by its name in torch.nn and in fastgates.
MODULES = {"lstm": "LSTM", "gru": "GRU", "lstmcell": "LSTMCell", "grucell": "GRUCell"}
CELLS = tuple(MODULES)
# The cell modules, one step per call: they have one layer.
STEP_CELLS = ("lstmcell", "grucell")


def is_lstm(cell: str) -> bool:
    return cell in ("lstm", "lstmcell")


def gates(cell: str) -> int:
    """G: the gates of the cell, 4 for the LSTM's, 3 for the GRU's."""
    return 4 if is_lstm(cell) else 3

# The base point every one-dimensional sweep varies one coordinate of.
BASE = {"T": 100, "B": 32, "H": 256, "layers": 1}
BATCHES = (1, 8, 32, 64, 256)
HIDDEN_SIZES = (64, 128, 256, 512, 1024)
# T = 1 is streaming inference: one call per step, where the per-call cost is all there is.
STEPS = (1, 25, 100, 200)


@dataclass(frozen=True)
class Case:
    """One shape: ``T`` steps, ``B`` batch, ``I`` input_size, ``H`` hidden_size, ``layers``
    num_layers (unidirectional, no projection, bias on; 1 for the cell modules)."""

    cell: str  # one of CELLS; for lstmcell and grucell, T is the number of calls
    T: int
    B: int
    I: int  # noqa: E741 (the input_size, named as in the shapes (T, B, I))
    H: int
    layers: int = 1


def _case(cell: str, T: int, B: int, H: int, layers: int = 1) -> Case:
    return Case(cell=cell, T=T, B=B, I=H, H=H, layers=layers)


def _unique(cases: list[Case]) -> list[Case]:
    # The sweeps share points (the base point is on every one); measure each once, in order.
    return list(dict.fromkeys(cases))


def full_cases(cells: list[str]) -> list[Case]:
    """The full run: the grid batch x hidden_size at T = 100 (which holds the batch and hidden
    sweeps through the base point, and feeds the plot), the T sweep at B = 32, H = 256, and
    num_layers = 2 at the base point; I = H everywhere."""
    cases = []
    for cell in cells:
        cases += [_case(cell, BASE["T"], B, H) for B in BATCHES for H in HIDDEN_SIZES]
        cases += [_case(cell, T, BASE["B"], BASE["H"]) for T in STEPS]
        if cell not in STEP_CELLS:
            cases.append(_case(cell, BASE["T"], BASE["B"], BASE["H"], layers=2))
    return _unique(cases)


def quick_cases(cells: list[str]) -> list[Case]:
    """The quick run: the base point, batch 1, and a small and a large hidden_size at T = 50."""
    shapes = [(100, 32, 256), (100, 1, 256), (50, 32, 64), (50, 32, 512)]
    return _unique([_case(cell, T, B, H) for cell in cells for T, B, H in shapes])


def parse_cases(spec: str, cells: list[str]) -> list[Case]:
    """Explicit cases: comma-separated ``TxBxH`` or ``TxBxHxL`` (L = num_layers; I = H), for
    each cell."""
    cases = []
    for item in spec.split(","):
        values = [int(v) for v in item.strip().lower().split("x")]
        if len(values) not in (3, 4) or min(values) < 1:
            raise ValueError(f"a case is TxBxH or TxBxHxL with positive integers, not {item!r}")
        for cell in cells:
            if cell in STEP_CELLS and len(values) == 4 and values[3] != 1:
                raise ValueError(f"{cell} has one layer: {item!r} asks for {values[3]}")
            cases.append(_case(cell, *values))
    return _unique(cases)
