"""The PNG: per cell and mode, (a) time against hidden_size, one line per batch (fastgates solid,
torch.nn dashed), and (b) speedup of fastgates over torch.nn against hidden_size, per batch."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from .cases import MODULES  # noqa: E402


def _panel_records(records: list[dict], cell: str, mode: str) -> tuple[int | None, list[dict]]:
    """The single-layer records of a cell and mode at the sequence length with the most hidden
    sizes (lines mixing sequence lengths would mislead), and that length."""
    rows = [r for r in records if r["cell"] == cell and r["mode"] == mode and r["layers"] == 1
            and r["impl"] in ("fastgates", "torch.nn")]
    if not rows:
        return None, []
    h_per_t = Counter({T: len({r["H"] for r in rows if r["T"] == T}) for T in {r["T"] for r in rows}})
    T = max(h_per_t, key=lambda t: (h_per_t[t], t))
    return T, [r for r in rows if r["T"] == T]


def plot(records: list[dict], path: str | Path, title: str) -> None:
    """Writes the PNG to ``path``; with nothing to plot, a figure that says so."""
    panels = [(cell, mode) for cell in dict.fromkeys(r["cell"] for r in records)
              for mode in dict.fromkeys(r["mode"] for r in records)]
    panels = [(cell, mode, *_panel_records(records, cell, mode)) for cell, mode in panels]
    panels = [p for p in panels if p[3]]
    fig, axes = plt.subplots(max(len(panels), 1), 2, figsize=(11, 3.6 * max(len(panels), 1)),
                             squeeze=False, layout="constrained")
    if not panels:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "nothing to plot", ha="center", va="center")
            ax.set_axis_off()
    for (cell, mode, T, rows), (ax_time, ax_ratio) in zip(panels, axes):
        batches = sorted({r["B"] for r in rows})
        colors = plt.cm.viridis([i / max(len(batches) - 1, 1) for i in range(len(batches))])
        for B, color in zip(batches, colors):
            for impl, style in (("fastgates", "-"), ("torch.nn", "--")):
                points = sorted((r["H"], r["median_ms"]) for r in rows if r["B"] == B and r["impl"] == impl)
                if points:
                    ax_time.plot(*zip(*points), style, marker="o", color=color, label=f"{impl}, B={B}")
            ratios = sorted((r["H"], r["ratio_vs_torch"]) for r in rows
                            if r["B"] == B and r["impl"] == "fastgates" and r.get("ratio_vs_torch"))
            if ratios:
                ax_ratio.plot(*zip(*ratios), "-", marker="o", color=color, label=f"B={B}")
        ax_time.set(xscale="log", yscale="log", xlabel="hidden_size H (= input_size)", ylabel="median ms",
                    title=f"(a) {MODULES[cell]} {mode}, T={T}: time")
        ax_ratio.axhline(1.0, color="gray", linewidth=1)
        ax_ratio.set(xscale="log", xlabel="hidden_size H (= input_size)", ylabel="torch.nn ms / fastgates ms",
                     title=f"(b) {MODULES[cell]} {mode}, T={T}: speedup over torch.nn")
        hidden_sizes = sorted({r["H"] for r in rows})
        for ax in (ax_time, ax_ratio):
            # Ticks at the measured hidden sizes, written out (not as powers of ten).
            ax.set_xticks(hidden_sizes, [str(h) for h in hidden_sizes])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 140), fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
