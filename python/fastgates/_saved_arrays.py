"""Memory for the CPU forward's saved activations, used again from one training step to the next.

The activations a forward saves for its backward (LSTM: gates [·, 4H] and cell states [·, H];
GRU: [·, 4H]) live from the forward to the end of the backward, so they cannot be a reused
workspace. glibc maps every allocation above 32 MiB afresh, and the forward kernel then takes
a page fault per 4 KiB of it, each page zeroed by the operating system: an LSTM training step
at T = 200, B = 64, H = 512 took about 40,000 faults and 120 ms of system time for its 105 MB
of saved gates and 26 MB of cell states (Intel Xeon VM, 2 threads). Smaller arrays come from
glibc's heap, used again without faults, so only larger ones come from here.

An array handed out here is a view of a block this module allocated. The block returns to the
free list only when torch frees the array's storage: the storage holds the NumPy view of the
block that ``torch.from_numpy`` was given, and that view's finalizer gives the block back. So
a block is never handed out while any tensor (the autograd graph's saved tensors, a view or a
detached copy, a NumPy array made from it) can still read or write it.
"""

from __future__ import annotations

import collections
import math
import threading
import weakref

import numpy as np
import torch

# Arrays from this size on come from the free list (glibc maps anything larger afresh).
MIN_BYTES = 32 << 20
# Free blocks kept at most, in bytes and in number: the saved activations of a few large
# layers (the number keeps the searches short when a test lowers MIN_BYTES).
MAX_FREE_BYTES = 1 << 30
MAX_FREE_BLOCKS = 32
_ALIGNMENT = 64

_lock = threading.Lock()
_free: list[np.ndarray] = []
# Blocks given back by finalizers (_give_back), which ``empty`` moves to the free list.
_returned: collections.deque[np.ndarray] = collections.deque()


def empty(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor of this shape with like's dtype and device: from a reused block
    on the CPU when it is at least MIN_BYTES, else ``like.new_empty`` (decided without a call
    out: a one-step cell's forward makes two or three small ones)."""
    dtype = like.dtype
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or not like.is_cpu:
        return like.new_empty(shape)
    block = _take(nbytes)
    if block is None:
        block = np.empty(nbytes + _ALIGNMENT, dtype=np.uint8)
    offset = -block.ctypes.data % _ALIGNMENT
    view = block[offset:offset + nbytes]
    weakref.finalize(view, _give_back, block).atexit = False
    return torch.from_numpy(view).view(dtype).view(shape)


def _give_back(block: np.ndarray) -> None:
    """The finalizer of a block's view. It runs wherever the last reference dies (the autograd
    engine's thread, a garbage collection inside any code, even inside ``_take``), so it takes
    no lock: only the deque's atomic operations, the oldest blocks dropped beyond the bounds."""
    _returned.append(block)
    while len(_returned) > MAX_FREE_BLOCKS or _bytes(_returned) > MAX_FREE_BYTES:
        try:
            _returned.popleft()
        except IndexError:
            break


def _take(nbytes: int) -> np.ndarray | None:
    """The smallest free block that holds nbytes (and the alignment) and is at most twice as
    large, removed from the free list; None if there is none."""
    with _lock:
        while True:  # a finalizer in another thread may empty the deque between two calls
            try:
                _free.append(_returned.popleft())
            except IndexError:
                break
        need = nbytes + _ALIGNMENT
        fitting = [i for i, b in enumerate(_free) if need <= b.nbytes <= 2 * need]
        best = min(fitting, key=lambda i: _free[i].nbytes, default=None)
        block = None if best is None else _free.pop(best)
        total = _bytes(_free)
        while total > MAX_FREE_BYTES or len(_free) > MAX_FREE_BLOCKS:
            total -= _free.pop(0).nbytes
        return block


def free_bytes() -> int:
    """Bytes of the blocks that no tensor uses now (kept for the next forward)."""
    with _lock:
        return _bytes(_free) + _bytes(_returned)


def _bytes(blocks) -> int:
    return sum(b.nbytes for b in list(blocks))  # list(): one atomic copy of a deque
