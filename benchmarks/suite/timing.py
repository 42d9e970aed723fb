"""Timing with ``torch.utils.benchmark``: per-call times of one run, and their median and
interquartile range pooled over several runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils import benchmark


@dataclass(frozen=True)
class Timing:
    """Median and interquartile range of the per-call time, in milliseconds."""

    median_ms: float
    iqr_ms: float


def block_times(fn: Callable[[], object], min_run_time: float) -> list[float]:
    """Per-call times in seconds, one per block, of ``fn()`` timed by
    ``Timer.blocked_autorange`` (which warms up first, and on CUDA synchronises) on torch's
    current intra-op thread count."""
    # num_threads must be passed: the Timer's default is 1 thread, not torch's setting.
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return list(timer.blocked_autorange(min_run_time=min_run_time).times)


def summarise(times: Sequence[float]) -> Timing:
    """Median and interquartile range of per-call times in seconds (from one or more runs)."""
    if not times:
        raise ValueError("summarise: no times")
    q1, median, q3 = np.percentile(np.asarray(times, dtype=np.float64) * 1e3, [25, 50, 75])
    return Timing(median_ms=float(median), iqr_ms=float(q3 - q1))


def measure(fn: Callable[[], object], min_run_time: float) -> Timing:
    """Median and interquartile range of one ``block_times`` run of ``fn()``."""
    return summarise(block_times(fn, min_run_time))
