"""The results: one record per measurement, FLOP counts and rates, the Markdown table and the
JSON file (its format is documented in ``benchmarks/run.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from .cases import Case, gates
from .timing import Timing

# The keys that identify a shape and mode; measurements that share them are compared.
SHAPE_KEYS = ("cell", "T", "B", "I", "H", "layers", "mode")
IMPL_LABELS = {"reference": "reference (numpy float64)"}


def flops(case: Case, mode: str) -> float:
    """FLOP of one call: 2 per multiply-add of the matrix products that run (gate math not
    counted), per row of the T·B, summed over layers of input width W (I, then H for the
    layers above; G = 4 LSTM, 3 GRU; a cell module's T calls count as T steps). Forward:
    x W_ihᵀ and h W_hhᵀ, G·H·(W + H). Train adds the backward's dgates·W_hh, dW_hh and dW_ih,
    G·H·(2H + W), and, above the first layer, the input gradient dgates·W_ih, G·H·W: the
    suite's x does not require grad, so the first layer has none. dgates·W_hh is counted at
    every step, though at the first, whose zero state needs no gradient, fastgates skips it."""
    g = gates(case.cell)
    forward = backward = 0
    for k in range(case.layers):
        width = case.I if k == 0 else case.H
        forward += g * case.H * (width + case.H)
        backward += g * case.H * (2 * case.H + width + (width if k > 0 else 0))
    rows = 2.0 * case.T * case.B
    return rows * forward if mode == "forward" else rows * (forward + backward)


def record(case: Case, impl: str, mode: str, device: str, dtype: str, timing: Timing) -> dict:
    """One measurement's record, with its GFLOP/s."""
    return {
        "cell": case.cell, "impl": impl, "device": device, "dtype": dtype,
        "T": case.T, "B": case.B, "I": case.I, "H": case.H, "layers": case.layers, "mode": mode,
        "median_ms": timing.median_ms, "iqr_ms": timing.iqr_ms,
        "gflops": flops(case, mode) / timing.median_ms / 1e6,
    }


def annotate(records: list[dict], peak_gflops: float | None) -> None:
    """Adds ``peak_fraction`` (GFLOP/s over the peak; None for the float64 reference, whose
    arithmetic the float32 peak does not bound, or without a peak) and ``ratio_vs_torch``
    (torch.nn's median over this one; None without a torch.nn measurement of the same shape
    and mode) to each record, in place."""
    torch_ms = {tuple(r[k] for k in SHAPE_KEYS): r["median_ms"] for r in records if r["impl"] == "torch.nn"}
    for r in records:
        r["peak_fraction"] = r["gflops"] / peak_gflops if peak_gflops and r["impl"] != "reference" else None
        baseline = torch_ms.get(tuple(r[k] for k in SHAPE_KEYS))
        r["ratio_vs_torch"] = baseline / r["median_ms"] if baseline is not None else None


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _sig(value: float | None) -> str:
    # Three significant figures, without exponents up to 1e6.
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def markdown(records: list[dict]) -> str:
    """The Markdown table of the records, in measurement order."""
    lines = [
        "| cell | mode | T | B | I | H | layers | impl | median ms | IQR ms | GFLOP/s | % of peak | torch.nn / impl |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        percent = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(
            f"| {r['cell']} | {r['mode']} | {r['T']} | {r['B']} | {r['I']} | {r['H']} | {r['layers']} | "
            f"{IMPL_LABELS.get(r['impl'], r['impl'])} | {_sig(r['median_ms'])} | {_sig(r['iqr_ms'])} | "
            f"{_sig(r['gflops'])} | {_number(percent, 1)} | {_number(r['ratio_vs_torch'], 2)} |"
        )
    return "\n".join(lines)


def write_json(path: str | Path, machine: dict, records: list[dict]) -> None:
    """Writes the machine record followed by the measurement records, as one JSON list."""
    Path(path).write_text(json.dumps([machine, *records], indent=1) + "\n")
