"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

import fastgates


@pytest.fixture(scope="module", params=["torch", "fastgates"])
def each_cpu_gemm(request):
    """Runs a test once with each GEMM of the CPU backward passes (fastgates.set_cpu_gemm): the
    default picks one by instruction set, and both must give torch.nn's gradients. Modules that
    check gradients use it with ``pytestmark = pytest.mark.usefixtures("each_cpu_gemm")``. Module-scoped: the module runs
    once per GEMM (and hypothesis accepts it)."""
    before = fastgates.set_cpu_gemm(request.param)
    yield request.param
    fastgates.set_cpu_gemm(before)
