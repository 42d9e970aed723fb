"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

import fastgates
from fastgates import _C


@pytest.fixture(scope="module", params=["torch", "fastgates"])
def each_cpu_gemm(request):
    """Runs a test once with each GEMM of the CPU backward passes (fastgates.set_cpu_gemm): the
    default picks one by instruction set, and both must give torch.nn's gradients. Modules that
    check gradients use it with ``pytestmark = pytest.mark.usefixtures("each_cpu_gemm")``. Module-scoped: the module runs
    once per GEMM (and hypothesis accepts it)."""
    before = fastgates.set_cpu_gemm(request.param)
    yield request.param
    fastgates.set_cpu_gemm(before)


@pytest.fixture
def split_small_shapes_across_threads():
    """The kernels and the GEMM keep small problems on one thread; tests of thread counts want
    every thread used."""
    before = _C.set_multiply_adds_per_thread(0)
    yield
    _C.set_multiply_adds_per_thread(before)


@pytest.fixture(params=_C.supported_cpu_isas().split(","))
def isa(request):
    """Runs a test with each instruction-set build of the CPU kernels this processor can run."""
    before = _C.cpu_isa()
    _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa(before)


@pytest.fixture(autouse=True, scope="session")
def arrays_of_every_size_reused():
    """Every test's saved activations, weight and input gradients come from
    fastgates._reused_arrays' blocks (in use, only arrays of 512 KiB and more do), so that every
    gradient the suite checks also checks that no block is handed out while a tensor still uses
    it."""
    from fastgates import _reused_arrays

    before = _reused_arrays.MIN_BYTES
    _reused_arrays.MIN_BYTES = 1
    yield
    _reused_arrays.MIN_BYTES = before
