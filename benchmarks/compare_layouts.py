"""torch.nn against fastgates on packed batches, projections and bidirectional layers, in one
process, on the same weights and inputs.

    python benchmarks/compare_layouts.py
    python benchmarks/compare_layouts.py --steps 200 --batch 64 --hidden 512

Prints a Markdown table of medians (torch.utils.benchmark, torch's intra-op thread count) and
the ratio torch.nn / fastgates (above 1: fastgates is faster). `forward` is inference
(torch.no_grad); `train` is forward + backward of the sum of the outputs and final states.
Packed batches have lengths drawn uniformly from [steps / 10, steps] (seeded), the longest
being `steps`.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastgates

# The suite package sits next to this file (benchmarks/suite), whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suite.timing import measure  # noqa: E402

CASES = [
    ("LSTM, packed", "LSTM", {}, True),
    ("GRU, packed", "GRU", {}, True),
    ("LSTM, bidirectional", "LSTM", {"bidirectional": True}, False),
    ("GRU, bidirectional", "GRU", {"bidirectional": True}, False),
    ("LSTM, proj_size=H/4", "LSTM", {"proj_size": -4}, False),
    ("LSTM, proj_size=H/4, packed, bidirectional", "LSTM", {"proj_size": -4, "bidirectional": True}, True),
]


def step_function(layer, x, lengths, training: bool):
    def outputs():
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if lengths is not None else x
        out, states = layer(inp)
        return (out.data if lengths is not None else out), (states if isinstance(states, tuple) else (states,))

    if not training:
        def run():
            with torch.no_grad():
                outputs()
        return run

    def run():
        out, states = outputs()
        (out.sum() + sum(s.sum() for s in states)).backward()
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256, help="hidden size = input size")
    parser.add_argument("--min-run-time", type=float, default=1.5, help="seconds per measurement")
    args = parser.parse_args(argv)
    T, B, H = args.steps, args.batch, args.hidden
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(1, T // 10), T + 1, (B,), generator=generator)
    lengths[0] = T
    print(f"torch {torch.__version__}, fastgates {fastgates.__version__} (CPU kernels: {fastgates.cpu_isa()}), "
          f"{torch.get_num_threads()} threads, float32, T = {T}, B = {B}, I = H = {H}, packed lengths "
          f"{lengths.min().item()}..{T} (mean {lengths.float().mean().item():.0f})\n")
    print("| layer | mode | torch.nn ms | fastgates ms | torch.nn / fastgates |")
    print("|---|---|---|---|---|")
    for name, mode, kwargs, packed in CASES:
        kwargs = {k: (H // -v if k == "proj_size" else v) for k, v in kwargs.items()}
        torch.manual_seed(0)
        reference = getattr(torch.nn, mode)(H, H, **kwargs)
        fast = fastgates.from_torch(reference)
        x = torch.randn(T, B, H, requires_grad=True)
        for training in (False, True):
            times = [measure(step_function(layer, x, lengths if packed else None, training), args.min_run_time).median_ms
                     for layer in (reference, fast)]
            print(f"| {name} | {'train' if training else 'forward'} | {times[0]:.1f} | {times[1]:.1f} | "
                  f"{times[0] / times[1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
