"""What the machine can do, measured by the suite itself, and the machine record of the JSON.

- CPU peak: ``fastgates._C.cpu_peak_gflops(threads)``, GFLOP/s of a float32 FMA loop held in
  registers on all threads, with the widest instruction set fastgates' kernels use on this
  CPU (``fastgates.cpu_isa()``). It bounds what any float32 kernel can reach here.
- CUDA peak: a large ``torch.mm`` (8192 x 8192) in the chosen dtype (cuBLAS), timed.
- torch GEMM rate (a second reference line): ``torch.mm`` of two 2048 x 2048 matrices, float32
  on the CPU, the chosen dtype on CUDA, timed like every measurement.
"""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass

import torch

import fastgates

from .timing import measure


@dataclass(frozen=True)
class Rate:
    """A rate in GFLOP/s and how it was measured."""

    gflops: float
    method: str


def mm_gflops(n: int, device: str, dtype: torch.dtype, min_run_time: float) -> float:
    """GFLOP/s of ``torch.mm`` of two n x n matrices (2 n^3 FLOP), median time."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timing = measure(lambda: torch.mm(a, b), min_run_time)
    return 2.0 * n**3 / timing.median_ms / 1e6


def torch_gemm(device: str, dtype: torch.dtype, min_run_time: float) -> Rate:
    """torch's GEMM rate: ``torch.mm`` 2048 x 2048 (float32 on the CPU, ``dtype`` on CUDA)."""
    dtype = dtype if device.startswith("cuda") else torch.float32
    n = 2048
    return Rate(mm_gflops(n, device, dtype, min_run_time), f"torch.mm {n}x{n} {str(dtype).removeprefix('torch.')}")


def peak(device: str, dtype: torch.dtype, threads: int, min_run_time: float) -> Rate:
    """The machine's peak for this run: see the module docstring."""
    if device.startswith("cuda"):
        n = 8192
        return Rate(mm_gflops(n, device, dtype, min_run_time),
                    f"torch.mm {n}x{n} {str(dtype).removeprefix('torch.')} on {torch.cuda.get_device_name(device)}")
    from fastgates import _C

    method = (f"fastgates._C.cpu_peak_gflops({threads}): float32 FMA loop in registers, "
              f"{fastgates.cpu_isa()}, {threads} threads")
    return Rate(float(_C.cpu_peak_gflops(threads)), method)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def huge_pages() -> str:
    """Whether torch's CPU allocator asks for transparent huge pages (THP_MEM_ALLOC_ENABLE) and
    the kernel's THP mode. Large training steps fault in hundreds of MB per step, and huge pages
    change torch.nn's time there by a quarter on this project's Intel VM (README)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            modes = f.read().split()
        mode = next((m.strip("[]") for m in modes if m.startswith("[")), "unknown")
    except OSError:
        mode = "unknown"
    return f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, transparent_hugepage={mode}"


def machine_record(device: str, dtype: torch.dtype, threads: int, run_peak: Rate, torch_mm: Rate) -> dict:
    """The JSON's machine record (see ``benchmarks/run.py`` for its keys)."""
    from fastgates import _C
    return {
        "record": "machine",
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_version": torch.__version__,
        "fastgates_version": fastgates.__version__,
        "cpu_isa": fastgates.cpu_isa(),
        "cpu_gemm": fastgates.cpu_gemm(),
        "l2_cache_bytes": _C.l2_cache_bytes(),
        "threads": threads,
        "huge_pages": huge_pages(),
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "cuda_device": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
        "peak_gflops": run_peak.gflops,
        "peak_method": run_peak.method,
        "torch_mm_gflops": torch_mm.gflops,
        "torch_mm_method": torch_mm.method,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
