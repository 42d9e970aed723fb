"""Memory for the large CPU arrays a training step makes afresh, used again from one step to the next.

Two kinds: the activations a forward saves for its backward (LSTM: gates [·, 4H] and cell
states [·, H]; GRU: [·, 4H]), which live from the forward to the end of the backward, so they
cannot be a reused workspace; and what the backward's products return (the weight gradients
[G·H, I] and [G·H, H], which autograd keeps as the parameters' .grad, and dx), with the zeros
that stand for an output's missing gradient. glibc gives such arrays from its heap or maps them
afresh depending on the heap's history: every allocation above 32 MiB is mapped, and smaller
ones are mapped, or the heap's top given back to the system, often enough that a kernel writing
them takes a page fault per 4 KiB, each page zeroed by the operating system. An LSTM training
step at T = 200, B = 64, H = 512 took about 40,000 faults and 120 ms of system time for its
105 MB of saved gates and 26 MB of cell states; one step of an LSTMCell at B = 1, H = 1024
took 3,500-4,800 faults for its two 16 MiB weight gradients, 6.2-7.6 ms instead of 1.6-2.3
(Intel Xeon VM, 2 threads); a GRU step at B = 1, H = 256 (two 768 KiB weight gradients) took
8-120 faults in some processes and none in others. Handing out a block costs about 6 µs of
Python alone, 10-15 inside a training step, which a step that would not have faulted pays
(20-45 µs a step at H = 256); arrays below MIN_BYTES come from glibc's heap as before (no step
measured faulted on its arrays of 256 KiB).

An array handed out here is a view of a block this module allocated. The block returns to the
free list only when torch frees the array's storage: the storage holds the NumPy view of the
block that ``torch.from_numpy`` was given, and a weak reference to that view gives the block
back when it dies. So a block is never handed out while any tensor (the autograd graph's saved
tensors, a parameter's .grad, a view or a detached copy, a NumPy array made from it) can still
read or write it. Such a tensor's storage cannot be resized (``resize_`` to a larger size
raises), as for any tensor made by ``torch.from_numpy``.
"""

from __future__ import annotations

import collections
import math
import threading
import weakref

import numpy as np
import torch

# Arrays from this size on come from the free list (see above).
MIN_BYTES = 512 << 10
# Free blocks kept at most, in bytes and in number: the arrays of a few large layers' steps
# (the number keeps the searches short when a test lowers MIN_BYTES).
MAX_FREE_BYTES = 1 << 30
MAX_FREE_BLOCKS = 32
_ALIGNMENT = 64

_lock = threading.Lock()
# Free blocks, each a 64-byte aligned uint8 array (a view of the array allocated for it).
_free: list[np.ndarray] = []
# Blocks given back by the weak references' callbacks (_give_back), which ``empty`` moves to
# the free list.
_returned: collections.deque[np.ndarray] = collections.deque()
# The weak reference to each handed-out view, by id, with its block: a weak reference's
# callback runs only while the reference itself lives.
_watched: dict[int, tuple[weakref.ref, np.ndarray]] = {}


# The dtypes handed out from blocks, as NumPy's (the CPU kernels' float32 and float64).
_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def is_large(shape: tuple[int, ...], like: torch.Tensor) -> bool:
    """Whether ``empty(shape, like)`` hands out a reused block: a float32 / float64 CPU array of
    at least MIN_BYTES (decided without a call out: a one-step cell's call makes several small
    ones)."""
    return _block_bytes(shape, like) > 0


def _block_bytes(shape: tuple[int, ...], like: torch.Tensor) -> int:
    """The bytes of the array when it comes from a block (is_large), else 0."""
    if not (like.is_cpu and like.dtype in _NUMPY_DTYPES):
        return 0
    nbytes = math.prod(shape) * like.dtype.itemsize
    return nbytes if nbytes >= MIN_BYTES else 0


def empty(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous tensor of this shape with like's dtype and device: from a
    reused block when it is large (is_large), else ``like.new_empty``. The tensor is
    ``torch.from_numpy`` of a typed, shaped view of the block, watched by a weak reference with
    a callback: with ``weakref.finalize`` and two torch views of a byte view, a hand-out cost
    about 30 µs inside a training step."""
    nbytes = _block_bytes(shape, like)
    if nbytes == 0:
        return like.new_empty(shape)
    block = _take(nbytes)
    if block is None:
        allocated = np.empty(nbytes + _ALIGNMENT, dtype=np.uint8)
        offset = -allocated.ctypes.data % _ALIGNMENT
        block = allocated[offset:offset + nbytes]
    view = block[:nbytes].view(_NUMPY_DTYPES[like.dtype]).reshape(shape)
    reference = weakref.ref(view, _give_back)
    _watched[id(reference)] = (reference, block)
    return torch.from_numpy(view)


def _give_back(reference: weakref.ref) -> None:
    """The callback of a view's weak reference. It runs wherever the last reference dies (the
    autograd engine's thread, a garbage collection inside any code, even inside ``_take``), so
    it takes no lock: only the dict's and deque's atomic operations, the oldest blocks dropped
    beyond the bounds."""
    entry = _watched.pop(id(reference), None)
    if entry is None:
        return
    _returned.append(entry[1])
    while len(_returned) > MAX_FREE_BLOCKS or _bytes(_returned) > MAX_FREE_BYTES:
        try:
            _returned.popleft()
        except IndexError:
            break


def _take(nbytes: int) -> np.ndarray | None:
    """The smallest free block that holds nbytes and is at most twice as large, removed from the
    free list; None if there is none."""
    with _lock:
        added = False
        try:  # (a callback in another thread may drop the deque's oldest between two calls)
            while _returned:
                _free.append(_returned.popleft())
                added = True
        except IndexError:
            pass
        if added:
            total = _bytes(_free)
            while total > MAX_FREE_BYTES or len(_free) > MAX_FREE_BLOCKS:
                total -= _free.pop(0).nbytes
        best, best_size = None, 2 * nbytes + 1
        for i, block in enumerate(_free):
            size = block.nbytes
            if nbytes <= size < best_size:
                best, best_size = i, size
        return None if best is None else _free.pop(best)


def free_bytes() -> int:
    """Bytes of the blocks that no tensor uses now (kept for the next step)."""
    with _lock:
        return _bytes(_free) + _bytes(_returned)


def _bytes(blocks) -> int:
    return sum(b.nbytes for b in list(blocks))  # list(): one atomic copy of a deque
