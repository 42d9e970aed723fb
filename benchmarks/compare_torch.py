"""torch.nn against fastgates, in one process, on the same weights and inputs.

    python benchmarks/compare_torch.py                 # the cases of the core issue
    python benchmarks/compare_torch.py --cases 100x32x256 --cells lstm --threads 1
    python benchmarks/compare_torch.py --device cuda --dtype bfloat16   # on a GPU: vs cuDNN

Prints a Markdown table: median time (ms) of each implementation, the ratio torch.nn /
fastgates (above 1: fastgates is faster), and fastgates' GFLOP/s. Modes: `forward` is
inference (torch.no_grad), `train` is forward + backward of sum(y) + sum(h_n) (+ sum(c_n)).
Timing: torch.utils.benchmark.Timer.blocked_autorange (warm-up included), median of its
blocks, torch's intra-op thread count as given by --threads; on CUDA the Timer synchronises.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.utils.benchmark as benchmark

import fastgates


def flops(cell: str, mode: str, T: int, B: int, I: int, H: int) -> float:
    """Multiply-adds of the matrix products, counted as 2 FLOP (gate math not counted)."""
    gates = 4 if cell == "lstm" else 3
    forward = 2.0 * T * B * gates * H * (I + H)
    return forward if mode == "forward" else 3.0 * forward


def make_layers(cell: str, I: int, H: int, device: str, dtype: torch.dtype):
    torch_cls, fast_cls = (torch.nn.LSTM, fastgates.LSTM) if cell == "lstm" else (torch.nn.GRU, fastgates.GRU)
    reference = torch_cls(I, H, device=device, dtype=dtype)
    fast = fast_cls(I, H, device=device, dtype=dtype)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def step_function(layer, x: torch.Tensor, mode: str):
    if mode == "forward":
        def run():
            with torch.no_grad():
                layer(x)
        return run

    def run():
        y, state = layer(x)
        states = state if isinstance(state, tuple) else (state,)
        loss = y.sum() + sum(s.sum() for s in states)
        loss.backward()
    return run


def median_ms(fn, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


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
    torch.manual_seed(0)

    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else (
        f"CPU kernels: {fastgates.cpu_isa()}, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, fastgates {fastgates.__version__} ({where}), {args.dtype}, I = H\n")
    print("| cell | mode | T | B | H | torch.nn ms | fastgates ms | torch.nn / fastgates | fastgates GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        T, B, H = (int(v) for v in case.split("x"))
        for cell in args.cells.split(","):
            reference, fast = make_layers(cell, H, H, args.device, dtype)
            x = torch.randn(T, B, H, device=args.device, dtype=dtype)
            for mode in args.modes.split(","):
                torch_ms = median_ms(step_function(reference, x, mode), args.min_run_time)
                fast_ms = median_ms(step_function(fast, x, mode), args.min_run_time)
                gflops = flops(cell, mode, T, B, H, H) / fast_ms / 1e6
                print(f"| {cell} | {mode} | {T} | {B} | {H} | {torch_ms:.2f} | {fast_ms:.2f} | "
                      f"{torch_ms / fast_ms:.2f} | {gflops:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
