"""fastgates: fused LSTM and GRU kernels for PyTorch.

``fastgates.LSTM``, ``fastgates.GRU``, ``fastgates.LSTMCell`` and ``fastgates.GRUCell`` are
drop-in replacements for their torch.nn namesakes (``fastgates.from_torch`` /
``fastgates.convert`` swap them in, ``.to_torch()`` back); ``fastgates.ops`` has the layers'
functional forms and the ``torch.ops.fastgates`` custom ops; ``fastgates.reference`` is a NumPy float64 reference implementation.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata

# The layers and ops need torch; the NumPy reference does not, so `fastgates.reference` stays
# importable where torch is not installed.
try:
    import torch as _torch  # noqa: F401
except ModuleNotFoundError as _error:
    if _error.name != "torch":
        raise
    _torch_missing: ModuleNotFoundError | None = _error
else:
    _torch_missing = None
    from . import ops
    from .convert import convert, from_torch
    from .nn import GRU, LSTM, GRUCell, LSTMCell

try:
    __version__ = _metadata.version("fastgates")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LSTM",
    "GRU",
    "LSTMCell",
    "GRUCell",
    "from_torch",
    "convert",
    "ops",
    "reference",
    "cpu_isa",
    "cpu_gemm",
    "set_cpu_gemm",
    "build_info",
    "__version__",
]


def cpu_isa() -> str:
    """The instruction set the compiled kernels run with: "avx512", "avx2" or "generic"."""
    from ._backend import C

    return C().cpu_isa()


def cpu_gemm() -> str:
    """The GEMM the CPU backward passes use for their time-parallel products (the input and
    weight gradients): "fastgates" (its own, with the recurrent kernels' micro-kernel) or
    "torch" (torch.mm: MKL in torch's CPU wheels). Under "auto" (see set_cpu_gemm), products
    below its size bounds run on torch's either way."""
    from ._backend import cpu_gemm

    return cpu_gemm()


def set_cpu_gemm(name: str) -> str:
    """Choose that GEMM: "auto" (the default: fastgates' own with the AVX-512 kernels on an AMD
    processor, where MKL runs its AVX2 code and reaches under half of the peak, for products
    with an inner dimension of at least 32 and 2^22 multiply-adds; torch's otherwise),
    "fastgates" (for every product) or "torch". Returns the previous choice. Either gives
    results bit-identical run after run at a given thread count; they differ from each other by
    float rounding."""
    from ._backend import set_cpu_gemm

    return set_cpu_gemm(name)


def build_info() -> dict:
    """What the compiled module contains: ``cuda`` (bool: the CUDA kernels were compiled),
    ``cuda_archs`` (list of str, CMake's CUDA architectures), ``cuda_version`` (nvcc's, or None),
    ``cuda_emulated`` (the emulated CUDA kernels for tests, always built), ``cpu_isas`` (the
    instruction-set builds of the CPU kernels)."""
    from ._backend import C

    return dict(C().build_info())


_NEEDS_TORCH = ("LSTM", "GRU", "LSTMCell", "GRUCell", "from_torch", "convert", "ops")


def __getattr__(name: str):
    # The NumPy reference is imported on first use, to keep `import fastgates` light.
    if name == "reference":
        module = importlib.import_module(".reference", __name__)
        globals()[name] = module
        return module
    if name in _NEEDS_TORCH and _torch_missing is not None:
        raise ImportError(
            f"fastgates.{name} needs PyTorch, which is not installed (pip install torch); only "
            "fastgates.reference works without it"
        ) from _torch_missing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
