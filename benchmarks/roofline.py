"""Shared by the training-step benchmarks: the FLOPs of a step and the rate of a large matmul on the same device.

A step's achieved GFLOP/s beside a 2048² matmul's says how compute-bound each side is. It is context, not a hard
ceiling: oneDNN's convolutions can run faster than that matmul (a channels_last_3d 3D-ResNet step measured 129 % of
it on the development CPU), so the matmul rate does not bound what an equal-precision implementation can gain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of a ``size``² matmul in ``dtype`` on ``device`` (the device's practical peak)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        started = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def counted_gflop(step: Callable[[], object]) -> float:
    """GFLOP that ``step`` performs (convolutions, matmuls, attention: torch's FlopCounterMode), running it once."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def roofline_lines(gflop_per_sample: float, matmul_gflops: float, rates: dict[str, float]) -> list[str]:
    """One line per side: samples/s → achieved GFLOP/s → share of the 2048² matmul's rate."""
    return [f"{name}: {rate:.2f} samples/s = {rate * gflop_per_sample:.0f} GFLOP/s = "
            f"{100 * rate * gflop_per_sample / matmul_gflops:.0f}% of the fp32 matmul's rate"
            for name, rate in rates.items()]
