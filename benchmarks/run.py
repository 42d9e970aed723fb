"""The benchmark suite: fastgates against torch.nn (and the NumPy reference on small shapes),
LSTM and GRU (and, on request, the LSTMCell and GRUCell modules), inference and training, over
sweeps of batch, hidden size, length and layers.

    python benchmarks/run.py --quick                      # a representative subset, < 1 min
    python benchmarks/run.py                              # the full sweeps (long)
    python benchmarks/run.py --json results.json --plot results.png
    python benchmarks/run.py --device cuda --dtype bfloat16
    python benchmarks/run.py --cases 100x32x256,200x64x512x2    # given TxBxH[xnum_layers]
    python benchmarks/run.py --targets                    # the CPU speed targets: met or not
    python benchmarks/run.py --quick --cells lstmcell,grucell   # the cell modules, a call per step

Cases. Full: the grid batch B in {1, 8, 32, 64, 256} x hidden_size H in {64, ..., 1024} at
T = 100 (holding the B and H sweeps through the base point T = 100, B = 32, H = 256), the
sequence lengths T in {1, 25, 100, 200} at the base point, and num_layers = 2 at the base point.
Quick: (T, B, H) = (100, 32, 256), (100, 1, 256), (50, 32, 64), (50, 32, 512). Targets: the
eight cases and modes of the CPU speed targets (benchmarks/suite/targets.py: LSTM and GRU at
T = 100, B = 32 and 1, H = 256; LSTM at T = 200, B = 64, H = 512), followed by a table of each
target, the measured torch.nn / fastgates and whether it is met. Always input_size I = H,
unidirectional, with biases. --cells chooses among lstm, gru (the layers; the default) and
lstmcell, grucell (the cell modules, called once per step in a Python loop from zero states,
T calls per run; the same grid without num_layers = 2).

Implementations: `torch.nn` (torch.nn.LSTM/GRU, LSTMCell/GRUCell; cuDNN on CUDA), `fastgates`
(the same state dict), `reference` (fastgates.reference, NumPy float64 on the CPU; only where
T*B*H*(I+H)*num_layers <= 2**25, i.e. small shapes). Modes: `forward` is inference under
torch.no_grad(); `train` is forward + backward of y.sum() + h_n.sum() (+ c_n.sum()), for a cell
module the sum of every step's h plus the last h (and c); for the reference, its forward and
then its gradient function.

Timing: torch.utils.benchmark.Timer(num_threads=torch.get_num_threads()).blocked_autorange
(warm-up first; synchronises on CUDA). The implementations of a case and mode take turns,
--rounds times (default 3), each turn min_run_time / rounds seconds, so that a change in the
machine's load reaches all of them alike; median and interquartile range (IQR) in ms are over
the blocks of all turns.
GFLOP/s counts 2 FLOP per multiply-add of the matrix products that run: forward 2*T*B*G*H*(I+H)
per layer (G = 4 LSTM, 3 GRU); train adds the backward's 2*T*B*G*H*(2H+I) per layer, and
2*T*B*G*H*I more per layer above the first (the input gradient; the timed x needs none). The
backward's product dgates W_hh is counted at every step, though at the first, whose zero
state needs no gradient, fastgates skips it.
"% of peak" is GFLOP/s over the machine's peak, measured by the suite: on the CPU
fastgates._C.cpu_peak_gflops(threads) (a float32 FMA loop in registers on all threads, widest
instruction set fastgates uses here), on CUDA a torch.mm of 8192 x 8192 in the run's dtype.
torch.mm of 2048 x 2048 is timed too as a second reference. "torch.nn / impl" is torch.nn's
median over the row's (above 1: the row is faster).

Output: a Markdown table on stdout (always); a progress bar on stderr (on a terminal, unless
--quiet); --plot PATH writes a PNG (time and speedup against hidden size, per batch);
--json PATH writes a JSON list: first one machine record

    {"record": "machine", "cpu", "logical_cores", "torch_version", "fastgates_version",
     "cpu_isa", "cpu_gemm", "l2_cache_bytes" (what the CPU kernels plan for; 0: unknown),
     "threads", "huge_pages" (THP_MEM_ALLOC_ENABLE and the kernel's
     transparent_hugepage mode), "device", "dtype", "cuda_device" (or null), "peak_gflops",
     "peak_method", "torch_mm_gflops", "torch_mm_method", "date" (ISO 8601, UTC)}

then one record per measurement

    {"cell": "lstm"|"gru"|"lstmcell"|"grucell", "impl": "fastgates"|"torch.nn"|"reference",
     "device", "dtype" ("float64" for the reference), "T", "B", "I", "H", "layers", "mode": "forward"|"train",
     "median_ms", "iqr_ms", "gflops", "peak_fraction" (null for the reference),
     "ratio_vs_torch" (torch.nn median_ms / this median_ms)}
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from tqdm import tqdm

import fastgates

# Run as `python benchmarks/run.py` from anywhere: the suite package sits next to this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suite import cases, implementations, machine, plots, report, targets  # noqa: E402
from suite.timing import block_times, summarise  # noqa: E402

CUDA_DTYPES = ("float32", "bfloat16", "float16")


def _list(value: str, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items or any(v not in allowed for v in items):
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}, got {value!r}")
    return items


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", help="cpu: float32; cuda: float32, bfloat16, float16")
    parser.add_argument("--quick", action="store_true", help="a representative subset (under a minute on 2 cores)")
    parser.add_argument("--cells", default="lstm,gru", type=lambda v: _list(v, cases.CELLS),
                        help="comma list of lstm, gru (the layers; default: both), lstmcell, grucell "
                             "(the cell modules, one call per step)")
    parser.add_argument("--modes", default="forward,train", type=lambda v: _list(v, implementations.MODES),
                        help="comma list of forward (inference), train (forward + backward) (default: both)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--min-run-time", type=float, default=None,
                        help="seconds of timing per implementation, case and mode, split over the rounds "
                             "(default: 1.0, --quick 0.3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="turns the implementations of a case take, interleaved (default: 3)")
    parser.add_argument("--cpu-gemm", default="auto", choices=("auto", "fastgates", "torch"),
                        help="the GEMM of fastgates' CPU backward passes (fastgates.set_cpu_gemm; default: auto)")
    parser.add_argument("--l2-cache-bytes", type=int, default=None, metavar="BYTES",
                        help="the L2 size per core that fastgates' CPU kernels plan their chunks and weight "
                             "panel groups for (fastgates._C.set_l2_cache_bytes), e.g. 1048576 to try the "
                             "rules of a machine with 1 MiB; 0 as if unknown (default: this machine's)")
    parser.add_argument("--no-reference", action="store_true", help="skip the NumPy reference")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG plot")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--targets", action="store_true",
                        help="the CPU speed targets' eight cases and modes, and a table of which are met")
    # Explicit shapes instead of the sweeps (TxBxH or TxBxHxL, comma-separated); for tests.
    parser.add_argument("--cases", metavar="TxBxH[xL],...",
                        help="explicit shapes instead of the sweeps (I = H; L = num_layers, default 1), "
                             "e.g. 100x32x256,200x64x512")
    args = parser.parse_args(argv)
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        parser.error(f"--device: cpu or cuda, not {args.device!r}")
    allowed = CUDA_DTYPES if args.device.startswith("cuda") else ("float32",)
    if args.dtype not in allowed:
        parser.error(f"--dtype on {args.device}: one of {', '.join(allowed)}, not {args.dtype!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.rounds < 1:
        parser.error(f"--rounds: at least 1, not {args.rounds}")
    if args.targets and (args.cases or args.quick):
        parser.error("--targets measures its own cases: not with --cases or --quick")
    if args.min_run_time is None:
        args.min_run_time = 0.3 if args.quick else 1.0
    return args


def main(argv: list[str]) -> int:
    """Runs the suite with command-line arguments ``argv``; returns the exit code."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    dtype = getattr(torch, args.dtype)
    fastgates.set_cpu_gemm(args.cpu_gemm)
    if args.l2_cache_bytes is not None:
        from fastgates import _C

        _C.set_l2_cache_bytes(args.l2_cache_bytes)

    if args.targets:
        case_modes = targets.groups()
    else:
        if args.cases:
            run_cases = cases.parse_cases(args.cases, args.cells)
        elif args.quick:
            run_cases = cases.quick_cases(args.cells)
        else:
            run_cases = cases.full_cases(args.cells)
        case_modes = [(case, mode) for case in run_cases for mode in args.modes]

    peak = machine.peak(args.device, dtype, threads, args.min_run_time)
    gemm = machine.torch_gemm(args.device, dtype, args.min_run_time)
    machine_record = machine.machine_record(args.device, dtype, threads, peak, gemm)

    groups = [(case, mode, [impl for impl in implementations.IMPLEMENTATIONS
                            if impl != "reference" or (not args.no_reference and implementations.reference_runs(case))])
              for case, mode in case_modes]
    records = []
    subjects = None
    with tqdm(total=sum(len(impls) for _, _, impls in groups) * args.rounds, desc="measurements", file=sys.stderr,
              disable=args.quiet or not sys.stderr.isatty(), leave=False) as progress:
        for case, mode, impls in groups:
            if subjects is None or subjects.case != case:
                subjects = implementations.build(case, args.device, dtype)
            steps = {impl: implementations.step(subjects, impl, mode) for impl in impls}
            times = {impl: [] for impl in impls}
            # The implementations take turns, so that a change in the machine's load during the
            # case reaches all of them alike instead of only the one timed at that moment.
            for turn in range(args.rounds):
                for impl in impls:
                    progress.set_postfix_str(f"{case.cell} T={case.T} B={case.B} H={case.H} L={case.layers} "
                                             f"{impl} {mode} round {turn + 1}/{args.rounds}")
                    times[impl] += block_times(steps[impl], args.min_run_time / args.rounds)
                    progress.update()
            for impl in impls:
                on_cpu = impl == "reference"
                records.append(report.record(case, impl, mode, "cpu" if on_cpu else args.device,
                                             "float64" if on_cpu else args.dtype, summarise(times[impl])))
    report.annotate(records, peak.gflops)

    peak_text = f"{peak.gflops:.1f} GFLOP/s" if peak.gflops is not None else "unknown"
    header = (f"device {args.device}, dtype {args.dtype}, {threads} threads, fastgates {machine_record['fastgates_version']} "
              f"({machine_record['cpu_isa']}, backward GEMM {machine_record['cpu_gemm']}, "
              f"L2 planned for {machine_record['l2_cache_bytes'] // 1024} KiB), torch {torch.__version__}; "
              f"peak {peak_text} [{peak.method}]; "
              f"torch GEMM {gemm.gflops:.1f} GFLOP/s [{gemm.method}]; {machine_record['huge_pages']}")
    print(header + "\n")
    print(report.markdown(records), flush=True)
    if args.targets:
        print("\nCPU speed targets (torch.nn's median over fastgates'):\n")
        print(targets.markdown(targets.check(records)), flush=True)
    if args.json:
        report.write_json(args.json, machine_record, records)
    if args.plot:
        plots.plot(records, args.plot, header)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
