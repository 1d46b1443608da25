"""Timing helpers shared by the benchmark scripts (run explicitly, never as tests)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch


def best_time(fn: Callable[[], object], repeats: int = 3, sync: bool = False) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call), in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> str:
    """A one-line description of where the benchmark ran."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
