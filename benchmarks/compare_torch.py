"""torch.nn against fastgates, in one process, on the same weights and inputs.

    python benchmarks/compare_torch.py                 # the cases of the core issue
    python benchmarks/compare_torch.py --cases 100x32x256 --cells lstm --threads 1
    python benchmarks/compare_torch.py --device cuda --dtype bfloat16   # on a GPU: vs cuDNN

Prints a Markdown table: median time (ms) of each implementation, the ratio torch.nn /
fastgates (above 1: fastgates is faster), and fastgates' GFLOP/s. Modes: `forward` is
inference (torch.no_grad), `train` is forward + backward of sum(y) + sum(h_n) (+ sum(c_n)).
Timing: torch.utils.benchmark.Timer.blocked_autorange (warm-up included), median of its
blocks, torch's intra-op thread count as given by --threads; on CUDA the Timer synchronises.
The layers, timing and FLOP count are the benchmark suite's (benchmarks/suite, behind
benchmarks/run.py), which also sweeps shapes and writes JSON and plots.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import fastgates

# The suite package sits next to this file (benchmarks/suite), whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suite.cases import Case  # noqa: E402
from suite.implementations import build, step  # noqa: E402
from suite.report import flops  # noqa: E402
from suite.timing import measure  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="100x32x256,100x1x256", help="comma-separated TxBxH (I = H)")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--modes", default="forward,train")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (torch.nn then runs on cuDNN)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)

    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else (
        f"CPU kernels: {fastgates.cpu_isa()}, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, fastgates {fastgates.__version__} ({where}), {args.dtype}, I = H\n")
    print("| cell | mode | T | B | H | torch.nn ms | fastgates ms | torch.nn / fastgates | fastgates GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        T, B, H = (int(v) for v in case.split("x"))
        for cell in args.cells.split(","):
            shape = Case(cell, T, B, H, H)
            subjects = build(shape, args.device, dtype)
            for mode in args.modes.split(","):
                torch_ms = measure(step(subjects, "torch.nn", mode), args.min_run_time).median_ms
                fast_ms = measure(step(subjects, "fastgates", mode), args.min_run_time).median_ms
                gflops = flops(shape, mode) / fast_ms / 1e6
                print(f"| {cell} | {mode} | {T} | {B} | {H} | {torch_ms:.2f} | {fast_ms:.2f} | "
                      f"{torch_ms / fast_ms:.2f} | {gflops:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
