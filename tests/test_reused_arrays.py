"""fastgates._reused_arrays: the CPU training steps' large arrays in blocks used again once
torch has freed every tensor on them (conftest.py makes every size use them)."""

from __future__ import annotations

import collections
import gc
import threading

import pytest
import torch

import fastgates
from fastgates import _reused_arrays


@pytest.fixture(autouse=True)
def empty_free_list(monkeypatch):
    """Each test starts without free blocks (the suite's other tests leave some)."""
    monkeypatch.setattr(_reused_arrays, "_free", [])
    monkeypatch.setattr(_reused_arrays, "_returned", collections.deque())


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return _reused_arrays.empty(shape, torch.empty(0, dtype=dtype))


def _span(t: torch.Tensor) -> tuple[int, int]:
    start = t.untyped_storage().data_ptr()
    return start, start + t.untyped_storage().nbytes()


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    (a0, a1), (b0, b1) = _span(a), _span(b)
    return a0 < b1 and b0 < a1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_freed_array_is_handed_out_again_aligned(dtype):
    t = _empty((5, 3, 7), dtype)
    assert t.shape == (5, 3, 7) and t.dtype == dtype and t.is_contiguous() and t.data_ptr() % 64 == 0
    address = t.data_ptr()
    del t
    again = _empty((5, 3, 7), dtype)
    assert again.data_ptr() == address


@pytest.mark.parametrize("keep", ["view", "detached", "numpy", "saved by autograd"])
def test_a_block_is_not_handed_out_while_a_tensor_uses_it(keep):
    t = _empty((64, 33), torch.float32)
    t.copy_(torch.arange(t.numel(), dtype=torch.float32).view(t.shape))
    expected = t.clone()
    if keep == "view":
        kept = t[1:]
        expected = expected[1:]
    elif keep == "detached":
        kept = t.detach()
    elif keep == "numpy":
        kept = t.numpy()
    else:
        w = torch.ones(33, requires_grad=True)
        kept = (t * w).sum()  # the product saves t for the backward
    del t
    gc.collect()
    others = [_empty((64, 33), torch.float32) for _ in range(3)]
    for other in others:
        other.fill_(-1.0)
    if keep == "saved by autograd":
        kept.backward()
        assert torch.equal(w.grad, expected.sum(0))
    else:
        kept_tensor = torch.from_numpy(kept) if keep == "numpy" else kept
        assert torch.equal(kept_tensor, expected)
        assert not any(_overlap(kept_tensor, other) for other in others)


def test_blocks_given_back_in_another_thread_are_used_again():
    t = _empty((100, 10), torch.float32)
    address = t.data_ptr()
    holder = [t]
    del t
    worker = threading.Thread(target=holder.clear)
    worker.start()
    worker.join()
    assert _empty((100, 10), torch.float32).data_ptr() == address


def test_free_blocks_are_bounded(monkeypatch):
    monkeypatch.setattr(_reused_arrays, "MAX_FREE_BYTES", 1 << 16)
    arrays = [_empty((1000 + i,), torch.float32) for i in range(40)]
    del arrays
    assert _reused_arrays.free_bytes() <= 1 << 16  # 40 blocks of about 4 KB given back
    assert _reused_arrays._take(1 << 40) is None  # moves them to the free list, which it trims
    assert 0 < _reused_arrays.free_bytes() <= 1 << 16


def test_free_blocks_are_bounded_in_number(monkeypatch):
    monkeypatch.setattr(_reused_arrays, "MAX_FREE_BLOCKS", 5)
    arrays = [_empty((100 * (i + 1),), torch.float32) for i in range(12)]
    del arrays
    assert len(_reused_arrays._returned) == 5
    assert _reused_arrays._take(1 << 40) is None
    assert len(_reused_arrays._free) == 5 and not _reused_arrays._returned


def test_only_arrays_of_min_bytes_and_more_use_blocks(monkeypatch):
    monkeypatch.setattr(_reused_arrays, "MIN_BYTES", 1 << 20)
    small = _empty((10, 10), torch.float32)
    del small
    assert _reused_arrays.free_bytes() == 0
    large = _empty((1 << 18,), torch.float32)
    del large
    assert _reused_arrays.free_bytes() >= 1 << 20


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_graphs_kept_alive_keep_their_saved_activations(cell):
    """Two graphs alive at once, one of them differentiated twice (retain_graph), with other
    training steps in between: each backward still gets torch.nn's gradients."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(6, 9, num_layers=2, dtype=torch.float64)
    fast = getattr(fastgates, cell)(6, 9, num_layers=2, dtype=torch.float64)
    fast.load_state_dict(ref.state_dict())
    inputs = [torch.randn(5, 3, 6, dtype=torch.float64) for _ in range(4)]

    def loss(module, x):
        y, _ = module(x)
        return (y * y).sum()

    def grads(module, value):
        module.zero_grad()
        value.backward(retain_graph=True)
        return [p.grad.clone() for p in module.parameters()]

    first, second = loss(fast, inputs[0]), loss(fast, inputs[1])
    for x in inputs[2:]:
        grads(fast, loss(fast, x))
    for value, x in ((first, inputs[0]), (second, inputs[1]), (first, inputs[0])):
        expected = grads(ref, loss(ref, x))
        for got, want in zip(grads(fast, value), expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("cell", ["LSTMCell", "GRU"])
def test_gradients_kept_in_grad_over_steps_match_torch(cell, set_to_none):
    """The weight gradients come from blocks and autograd keeps them as the parameters' .grad:
    over several steps, accumulating into .grad or starting afresh each step, the blocks still
    held as .grad must not be handed to the next step's products."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(7, 6, dtype=torch.float64)
    fast = getattr(fastgates, cell)(7, 6, dtype=torch.float64)
    fast.load_state_dict(ref.state_dict())
    shape = (3, 7) if cell.endswith("Cell") else (4, 3, 7)
    for step in range(4):
        x = torch.randn(*shape, dtype=torch.float64)
        for module in (ref, fast):
            if step % 2 == 0:
                module.zero_grad(set_to_none=set_to_none)
            out = module(x)
            (out[0] if isinstance(out, tuple) else out).square().sum().backward()
        for (name, want), got in zip(ref.named_parameters(), fast.parameters(), strict=True):
            torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12,
                                       msg=lambda m, name=name, step=step: f"{name}.grad at step {step}: {m}")
