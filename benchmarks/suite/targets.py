"""The CPU speed targets of fastgates' benchmark issue: torch.nn's median time over fastgates',
both measured in one run with the same weights (float32, I = H), on eight cases; and the check
of a run's records against them (``run.py --targets``)."""

from __future__ import annotations

from .cases import Case, _case

# (cell, T, B, H, mode, the least torch.nn / fastgates that meets the target)
TARGETS = (
    ("lstm", 100, 32, 256, "forward", 1.0),
    ("lstm", 100, 32, 256, "train", 1.5),
    ("gru", 100, 32, 256, "forward", 2.5),
    ("gru", 100, 32, 256, "train", 2.5),
    ("lstm", 100, 1, 256, "forward", 2.5),
    ("lstm", 100, 1, 256, "train", 2.0),
    ("gru", 100, 1, 256, "train", 4.0),
    ("lstm", 200, 64, 512, "train", 1.3),
)


def groups() -> list[tuple[Case, str]]:
    """The (case, mode) pairs to measure, the modes of a case next to each other."""
    return [(_case(cell, T, B, H), mode) for cell, T, B, H, mode, _ in TARGETS]


def check(records: list[dict]) -> list[dict]:
    """One row per target: its case and mode, the target, the ratio fastgates' record of that
    case and mode measured (None if the run has none) and whether it meets the target."""
    rows = []
    for cell, T, B, H, mode, target in TARGETS:
        ratio = next((r["ratio_vs_torch"] for r in records
                      if r["impl"] == "fastgates" and (r["cell"], r["T"], r["B"], r["I"], r["H"], r["layers"], r["mode"])
                      == (cell, T, B, H, H, 1, mode)), None)
        rows.append({"cell": cell, "T": T, "B": B, "H": H, "mode": mode, "target": target, "ratio": ratio,
                     "met": ratio is not None and ratio >= target})
    return rows


def markdown(rows: list[dict]) -> str:
    """The targets table."""
    lines = ["| cell | T | B | H | mode | target | torch.nn / fastgates | met |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['cell']} | {r['T']} | {r['B']} | {r['H']} | {r['mode']} | ≥ {r['target']} | {ratio} | "
                     f"{'yes' if r['met'] else 'no'} |")
    return "\n".join(lines)
