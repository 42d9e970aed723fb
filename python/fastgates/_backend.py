"""Access to the compiled kernels (``fastgates._C``) and the per-call resources they need.

The compiled module is imported on first use, not when ``fastgates`` is imported, so that
``import fastgates`` stays light and a missing or broken build fails with a clear message at
the first kernel call instead of at import.
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
from types import ModuleType

import torch

_module: ModuleType | None = None

# The dtypes the compiled kernels implement, with the names ``_C.workspace_bytes`` expects.
KERNEL_DTYPES: dict[torch.dtype, str] = {torch.float32: "float32", torch.float64: "float64"}


def C() -> ModuleType:
    """The compiled module ``fastgates._C``, imported once."""
    global _module
    if _module is None:
        try:
            _module = importlib.import_module("fastgates._C")
        except ImportError as e:
            raise ImportError(
                "fastgates: the compiled kernels (fastgates._C) could not be imported; "
                "fastgates must be installed from a build (pip install .), not used from a "
                f"source tree alone. Cause: {e}"
            ) from e
    return _module


@functools.cache
def has_cuda_kernels() -> bool:
    """Whether this build compiled the CUDA kernels (asked once: it cannot change)."""
    return bool(C().build_info()["cuda"])


def num_threads() -> int:
    """Threads a kernel call may use: torch's intra-op thread count."""
    return max(1, torch.get_num_threads())


_workspaces = threading.local()


@functools.lru_cache(maxsize=256)
def _workspace_bytes(isa: str, function: str, *args) -> int:
    """``_C.<function>(*args)`` (workspace_bytes or matmul_workspace_bytes) for the kernels of
    instruction set ``isa`` (the layout depends on it), remembered: a call that repeats its
    shapes (streaming inference) skips the computation. Never 0: a 0-byte buffer's data pointer
    may be null."""
    return max(int(getattr(C(), function)(*args)), 1)


def workspace(kernel: str, dtype: torch.dtype, steps: int, batch: int, input_size: int,
              hidden_size: int, threads: int, proj_size: int = 0) -> torch.Tensor:
    """A scratch buffer of at least the size ``kernel`` needs for this call, allocated by torch.

    Each Python thread keeps its largest buffer and hands it out again: a fresh buffer of
    megabytes would be mapped anew by the allocator on every call, and the page faults of
    first touch, taken inside the kernel by all its threads at once, cost more than a short
    sequence's whole recurrence. Kernels run one at a time per Python thread, so one buffer
    per thread is never used twice at once.
    """
    nbytes = _workspace_bytes(C().cpu_isa(), "workspace_bytes", kernel, KERNEL_DTYPES[dtype], steps, batch,
                              input_size, hidden_size, threads, proj_size)
    return _reused_buffer("buffer", nbytes)


def _reused_buffer(name: str, nbytes: int) -> torch.Tensor:
    """This thread's buffer ``name``, of at least nbytes: grown (never shrunk) when too small,
    and handed out whole, since the kernels take a workspace of at least the size they need (a
    slice would cost a tensor call, about 1.2 µs, on every kernel call)."""
    buffer = getattr(_workspaces, name, None)
    if buffer is None or buffer.numel() < nbytes:
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        setattr(_workspaces, name, buffer)
    return buffer


CPU_GEMMS = ("auto", "fastgates", "torch")
_cpu_gemm = "auto"


def set_cpu_gemm(name: str) -> str:
    """Choose the GEMM of the CPU backward passes; returns the previous choice (see
    ``fastgates.set_cpu_gemm``)."""
    global _cpu_gemm
    if name not in CPU_GEMMS:
        raise ValueError(f"set_cpu_gemm: name must be one of {', '.join(map(repr, CPU_GEMMS))}, got {name!r}")
    previous, _cpu_gemm = _cpu_gemm, name
    return previous


def cpu_gemm() -> str:
    """The GEMM the CPU backward passes use now for products large enough (see
    ``own_gemm_for``): "fastgates" or "torch". "auto" takes fastgates' own where MKL (torch's
    CPU GEMM) runs its AVX2 code on an AVX-512 processor: on AMD's. On Intel's, MKL uses
    AVX-512 itself."""
    if _cpu_gemm == "auto":
        return "fastgates" if C().cpu_isa() == "avx512" and amd_processor() else "torch"
    return _cpu_gemm


# "auto" leaves products below these sizes to torch, whatever cpu_gemm() says: fastgates' GEMM
# costs about 17 µs more per call than torch.mm (m·n·k = 2^22 is about 40 µs of MKL's work on
# the AVX-512 machine), and with a very short inner dimension its per-output work (sums,
# stores) outweighs the products. Measured here (AVX2, where MKL runs near the peak; ours /
# torch's, median µs of 400 alternated calls, m = 1024, n = 256, transposed a): 377 / 369 at
# k = 32, 749 / 662 at k = 64, 860 / 897 at k = 100; before the products' partial sums were
# reworked (recurrence.h), 284 / 151 at k = 32 and 437 / 359 at k = 100. So from k = 32 on
# ours ties with MKL's AVX2 code here, and with the AVX-512 kernels it has twice the width.
OWN_GEMM_MIN_INNER = 32
OWN_GEMM_MIN_MULTIPLY_ADDS = 1 << 22


def own_gemm_for(m: int, n: int, k: int) -> bool:
    """Whether the product of an [m, k] by a [k, n] matrix runs on fastgates' own GEMM."""
    if _cpu_gemm == "auto":
        return k >= OWN_GEMM_MIN_INNER and m * n * k >= OWN_GEMM_MIN_MULTIPLY_ADDS and cpu_gemm() == "fastgates"
    return _cpu_gemm == "fastgates"


@functools.cache
def amd_processor() -> bool:
    """Whether the CPU is AMD's, from /proc/cpuinfo (False where that cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        pass
    return False


def matmul_workspace(dtype: torch.dtype, m: int, n: int, k: int, transpose_a: bool, threads: int) -> torch.Tensor:
    """This thread's reused scratch buffer (see ``workspace``), of at least the size ``_C.matmul``
    needs."""
    nbytes = _workspace_bytes(C().cpu_isa(), "matmul_workspace_bytes", KERNEL_DTYPES[dtype], m, n, k, transpose_a,
                              threads)
    return _reused_buffer("gemm", nbytes)


def gradient_scratch(like: torch.Tensor, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    """Arrays of these shapes, of like's dtype, for a backward op's gate gradients (dgates),
    which never leave the op: the GEMMs that make the weight and input gradients read them and
    write new tensors.

    Like the workspace, they are views of one buffer that each Python thread keeps and hands
    out again, so that a training step does not allocate and fault in a [T·B, G·H] array per
    layer (13 MB at T = 100, B = 32, H = 256; first touch costs about 0.35 ms per MB on this
    project's machine). The buffer is separate from the workspace, which the backward kernel
    uses at the same time. CPU tensors only.

    The views of the last call are kept and handed out again for the same dtype and shapes (every
    layer of a stack, every step of a streaming loop): making them takes seven tensor calls,
    about 16 µs, a tenth of a one-step GRU's backward op. Only this function grows the buffer,
    and a call that grows it replaces the kept views.
    """
    key = (like.dtype, shapes)
    last = getattr(_workspaces, "gradient_views", None)
    if last is not None and last[0] == key:
        return list(last[1])
    itemsize = like.element_size()
    aligned = [(math.prod(shape) * itemsize + 63) // 64 * 64 for shape in shapes]
    buffer = _reused_buffer("gradients", max(sum(aligned), 1))
    arrays, offset = [], 0
    for shape, size in zip(shapes, aligned, strict=True):
        count = math.prod(shape)
        arrays.append(buffer[offset : offset + count * itemsize].view(like.dtype).view(shape))
        offset += size
    _workspaces.gradient_views = (key, tuple(arrays))
    return arrays
