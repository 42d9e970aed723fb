"""Timing of one callable with ``torch.utils.benchmark``: median and interquartile range."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils import benchmark


@dataclass(frozen=True)
class Timing:
    """Median and interquartile range of the per-call time, in milliseconds."""

    median_ms: float
    iqr_ms: float


def measure(fn: Callable[[], object], min_run_time: float) -> Timing:
    """Times ``fn()`` with ``Timer.blocked_autorange`` (which warms up first, and on CUDA
    synchronises) on torch's current intra-op thread count."""
    # num_threads must be passed: the Timer's default is 1 thread, not torch's setting.
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(median_ms=measurement.median * 1e3, iqr_ms=measurement.iqr * 1e3)
