"""fastgates' own GEMM for the CPU backward passes (_C.matmul, fastgates.set_cpu_gemm).

Against torch.mm in float64 (tight) and float32, for every instruction-set build this
processor can run, shapes that leave partial register tiles, panels, super-tiles and slabs;
bit-identical run after run and at 1 and 2 threads; the binding's argument checks. The layers'
gradients with this GEMM are checked against torch.nn by the modules that use the
``each_cpu_gemm`` fixture (conftest.py).
"""

from __future__ import annotations

import pytest
import torch

import fastgates
from fastgates import _backend, _C
from rnn_helpers import (
    MODES,
    assert_close,
    grad_names,
    make_input,
    make_pair,
    output_names,
    run_with_grads,
    run_with_grads_at_threads,
)

pytestmark = pytest.mark.usefixtures("split_small_shapes_across_threads")  # conftest.py
NAMES = {torch.float32: "float32", torch.float64: "float64"}
# (m, n, k): 1s; sizes off every tile (3 rows, 8/16 lanes, 4 blocks, 24- or 32-row
# super-tiles); the slabs of 256 inner rows of the transposed product crossed (k = 301, 1100);
# the shapes of an LSTM's gradients (dx and dW at T·B = 100, H = 40); one super-tile of a's rows
# or less, where b's whole panels are read in place and a partial last one is packed
# (columns_in_place; 30 rows: in place with AVX-512, packed with AVX2); with a transposed a,
# a thread's super-tiles copied in several groups of 4 with a shorter last one and a partial
# last super-tile (m = 300: 10 or 13 super-tiles).
SHAPES = [(1, 1, 1), (5, 7, 3), (37, 70, 301), (25, 33, 1100), (100, 40, 160), (160, 40, 100), (2, 70, 33),
          (30, 130, 20), (300, 20, 600)]


def _matmul(a, b, transpose_a, c=None, accumulate=False, threads=2):
    m = a.shape[1] if transpose_a else a.shape[0]
    k, n = b.shape
    c = torch.full((m, n), float("nan"), dtype=a.dtype) if c is None else c
    nbytes = _C.matmul_workspace_bytes(NAMES[a.dtype], m, n, k, transpose_a, threads)
    workspace = torch.empty(nbytes, dtype=torch.uint8)
    _C.matmul(a, b, c, transpose_a, accumulate, workspace, threads)
    return c


def _operands(m, n, k, transpose_a, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn((k, m) if transpose_a else (m, k), generator=g, dtype=dtype)
    b = torch.randn(k, n, generator=g, dtype=dtype)
    c0 = torch.randn(m, n, generator=g, dtype=dtype)
    return a, b, c0


def _tolerance(dtype, k):
    # Sums of k products of standard normals: errors grow like sqrt(k) times the rounding unit.
    return (1e-12 if dtype == torch.float64 else 2e-5) * k**0.5


@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "accumulate"])
@pytest.mark.parametrize("transpose_a", [False, True], ids=["a", "a_t"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matmul_matches_torch_mm(isa, m, n, k, dtype, transpose_a, accumulate):
    a, b, c0 = _operands(m, n, k, transpose_a, dtype)
    expected = (a.t() if transpose_a else a) @ b
    if accumulate:
        expected = c0 + expected
    c = _matmul(a, b, transpose_a, c0.clone() if accumulate else None, accumulate)
    torch.testing.assert_close(c, expected, rtol=0, atol=_tolerance(dtype, k))


@pytest.mark.parametrize("m,n,k", [(70, 90, 1100), (300, 20, 600)])
@pytest.mark.parametrize("transpose_a", [False, True], ids=["a", "a_t"])
def test_matmul_is_bit_identical_across_runs_and_threads(isa, transpose_a, m, n, k):
    a, b, _ = _operands(m, n, k, transpose_a, torch.float32)
    first = _matmul(a, b, transpose_a, threads=2)
    assert torch.equal(first, _matmul(a, b, transpose_a, threads=2))
    assert torch.equal(first, _matmul(a, b, transpose_a, threads=1))


@pytest.mark.parametrize("m,n,k", [(70, 200, 2048), (300, 20, 600)])
@pytest.mark.parametrize("transpose_a", [False, True], ids=["a", "a_t"])
def test_matmul_does_not_depend_on_the_l2_size(isa, transpose_a, m, n, k):
    """The untransposed product takes b's panels a group at a time that fits half of the L2
    (panels_in_cache): with the L2 said to be 64 KiB, each of the first shape's panels (512 KiB
    in float32) is a group; with 64 MiB, all are one. The results are those for this machine's L2,
    bit for bit, and torch.mm's."""
    a, b, _ = _operands(m, n, k, transpose_a, torch.float32)
    expected = _matmul(a, b, transpose_a)
    for size in (0, 64 << 10, 64 << 20):
        before = _C.set_l2_cache_bytes(size)
        try:
            c = _matmul(a, b, transpose_a)
        finally:
            _C.set_l2_cache_bytes(before)
        assert torch.equal(c, expected), size
    torch.testing.assert_close(expected, (a.t() if transpose_a else a) @ b, rtol=0,
                               atol=_tolerance(torch.float32, k))


def _valid_call(transpose_a=False):
    a, b, _ = _operands(6, 5, 4, transpose_a, torch.float32)
    c = torch.empty(6, 5)
    workspace = torch.empty(_C.matmul_workspace_bytes("float32", 6, 5, 4, transpose_a, 1), dtype=torch.uint8)
    return dict(a=a, b=b, c=c, transpose_a=transpose_a, accumulate=False, workspace=workspace, num_threads=1)


@pytest.mark.parametrize("change,substrings", [
    (lambda k: k.update(a=torch.randn(6, 3)), ["a", "(6, 3)", "(6, 4)"]),
    (lambda k: k.update(b=torch.randn(4)), ["b", "2 dimensions"]),
    (lambda k: k.update(c=torch.empty(5, 6)), ["c", "(5, 6)", "(6, 5)"]),
    (lambda k: k.update(c=torch.empty(6, 5, dtype=torch.float64)), ["c", "float64", "float32"]),
    (lambda k: k.update(c=torch.empty(5, 6).t()), ["c", "contiguous"]),
    (lambda k: k.update(a=torch.randn(6, 4, dtype=torch.float16), b=torch.randn(4, 5, dtype=torch.float16),
                        c=torch.empty(6, 5, dtype=torch.float16)), ["float16", "float32 or float64"]),
    (lambda k: k.update(c=k["a"][:, :1].expand(6, 5)), ["c"]),
    (lambda k: k.update(workspace=torch.empty(8, dtype=torch.uint8)), ["workspace", "8 bytes"]),
    (lambda k: k.update(num_threads=0), ["num_threads"]),
])
def test_matmul_bad_arguments_raise(change, substrings):
    kwargs = _valid_call()
    change(kwargs)
    with pytest.raises(ValueError) as e:
        _C.matmul(**kwargs)
    for s in substrings:
        assert s in str(e.value), f"{s!r} not in {e.value}"


def test_matmul_output_overlapping_an_input_raises():
    storage = torch.randn(5, 5)
    kwargs = _valid_call()
    workspace = torch.empty(_C.matmul_workspace_bytes("float32", 5, 5, 4, False, 1), dtype=torch.uint8)
    kwargs.update(a=torch.randn(5, 4), b=storage[:4], c=torch.empty(5, 5), workspace=workspace)
    _C.matmul(**kwargs)  # valid without the overlap
    kwargs.update(c=storage)
    with pytest.raises(ValueError, match="output 'c' shares memory with 'b'"):
        _C.matmul(**kwargs)


def test_matmul_workspace_bytes_rejects_empty_sizes():
    with pytest.raises(ValueError, match="at least 1"):
        _C.matmul_workspace_bytes("float32", 0, 5, 4, False, 1)


def test_set_cpu_gemm_choices():
    before = fastgates.set_cpu_gemm("torch")
    try:
        assert fastgates.cpu_gemm() == "torch"
        assert fastgates.set_cpu_gemm("fastgates") == "torch"
        assert fastgates.cpu_gemm() == "fastgates"
        with pytest.raises(ValueError, match="'auto', 'fastgates', 'torch'"):
            fastgates.set_cpu_gemm("mkl")
        assert fastgates.cpu_gemm() == "fastgates"
    finally:
        fastgates.set_cpu_gemm(before)


@pytest.mark.parametrize("isa,amd,expected", [
    ("avx512", True, "fastgates"), ("avx512", False, "torch"), ("avx2", True, "torch"), ("generic", False, "torch"),
])
def test_auto_cpu_gemm_is_fastgates_only_with_avx512_on_amd(monkeypatch, isa, amd, expected):
    monkeypatch.setattr(_C, "cpu_isa", lambda: isa)
    monkeypatch.setattr(_backend, "amd_processor", lambda: amd)
    before = fastgates.set_cpu_gemm("auto")
    try:
        assert fastgates.cpu_gemm() == expected
        # Small products stay with torch under "auto" (per-call cost, very short inner dimension).
        assert _backend.own_gemm_for(100, 256, 1024) == (expected == "fastgates")
        assert _backend.own_gemm_for(1024, 256, 100) == (expected == "fastgates")
        assert not _backend.own_gemm_for(4096, 4096, 16)
        assert not _backend.own_gemm_for(8, 8, 4096)
        fastgates.set_cpu_gemm("fastgates")
        assert _backend.own_gemm_for(1024, 256, 100) and _backend.own_gemm_for(1, 1, 1)
    finally:
        fastgates.set_cpu_gemm(before)


@pytest.mark.parametrize("mode", MODES)
def test_training_with_own_gemm_is_bit_identical_at_one_and_two_threads(mode):
    # With fastgates' GEMM every gradient, not only the kernels' outputs, is computed the same
    # way at any thread count (torch's GEMMs split their sums by thread count).
    steps, batch, size = 20, 16, 96
    ours, ref = make_pair(mode, size, size, dtype=torch.float32)
    x, hx = make_input(mode, steps, batch, size, size, dtype=torch.float32)
    gemm_before = fastgates.set_cpu_gemm("fastgates")
    try:
        double = run_with_grads_at_threads(2, mode, ours, x, hx)
        single = run_with_grads_at_threads(1, mode, ours, x, hx)
    finally:
        fastgates.set_cpu_gemm(gemm_before)
    names = output_names(mode) + grad_names(mode, ours, True)
    for name, a, b in zip(names, double[0] + double[1], single[0] + single[1], strict=True):
        assert torch.equal(a, b), f"{name} differs between 2 threads and 1"
    reference = run_with_grads(mode, ref, x, hx)
    for name, a, b in zip(names, double[0] + double[1], reference[0] + reference[1], strict=True):
        assert_close(a, b, f"{name} against torch.nn")
