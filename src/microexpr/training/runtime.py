"""Where and how a fold trains: device, numeric precision and memory layout, resolved from ``auto`` settings.

- device ``auto``: CUDA when present, else CPU.
- precision ``auto``: bf16 autocast on CUDA devices that support it. On a CPU, fp32 unless a short measured probe
  says bf16 autocast is faster on *this* CPU: native bf16 instructions do not make it faster everywhere (an
  AVX512-BF16 CPU without AMX ran MMNet's training step slower in bf16 than in fp32; issue 9). The verdict is
  cached for the process and in a small JSON file per CPU model and torch version (``MICROEXPR_CACHE_DIR``,
  default ``~/.cache/microexpr``), so the probe runs once per machine.
- channels_last ``auto``: the channels-last layout of the model's convolutions. Models whose convolutions are all 2-D
  get ``channels_last`` (CUDA or CPU); models whose convolutions are all 3-D get ``channels_last_3d`` on a CPU,
  where it was measured faster (a 3D-ResNet10 stream at 16×112², forward + backward: 1.2× at batch 4, 1.4× at
  batch 8; docs/performance.md), and stay contiguous on CUDA, where it has not been measured. Off for models that
  mix 2-D and 3-D convolutions or have none. Only convolution weights change layout: other 4-D/5-D parameters
  (e.g. broadcast gate parameters) keep theirs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "PRECISIONS",
    "Runtime",
    "cpu_prefers_bf16",
    "conv_spatial_dims",
    "model_allows_channels_last",
    "place_model",
    "resolve_runtime",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
CHANNELS_LAST = ("auto", True, False)
BF16_SPEEDUP_NEEDED = 1.15  # bf16 must beat fp32 by this factor in the probe to be chosen on a CPU
_PROBE_VERSION = 2  # 2: interleaved, channels_last, RNG-neutral


@dataclass(frozen=True)
class Runtime:
    """Resolved device, precision ("bf16" | "fp32") and memory layout of one training run."""

    device: torch.device
    precision: str
    channels_last: bool
    spatial_dims: int = 2  # 2: NHWC (channels_last), 3: NDHWC (channels_last_3d) when channels_last

    def autocast(self) -> Any:
        """bf16 autocast on the device, or a no-op context in fp32."""
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @property
    def memory_format(self) -> torch.memory_format:
        if not self.channels_last:
            return torch.contiguous_format
        return torch.channels_last_3d if self.spatial_dims == 3 else torch.channels_last


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without either, oneDNN emulates bf16 and it is never faster than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _probe_cache_file() -> Path:
    root = Path(os.environ.get("MICROEXPR_CACHE_DIR") or Path.home() / ".cache" / "microexpr")
    return root / "cpu_precision_probe.json"


def _probe_step(precision: str) -> Any:
    """A small channels_last conv + BN + linear training step in ``precision``: the shape of a CNN step on a CPU."""
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # building the layers must not move anyone's global RNG
        torch.manual_seed(0)
        conv = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                             nn.Conv2d(64, 64, 3, padding=1)).to(memory_format=torch.channels_last)
        head = nn.Linear(64 * 28 * 28, 8)
    images = torch.randn(8, 32, 56, 56, generator=generator).contiguous(memory_format=torch.channels_last)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def step() -> None:
        with context:
            features = nn.functional.max_pool2d(conv(images), 2)
            loss = head(features.flatten(1)).float().square().mean()
        loss.backward()

    return step


def _time_training_steps(rounds: int = 5) -> dict[str, float]:
    """Best-of-``rounds`` seconds per step in fp32 and bf16, timed alternately so that load on the machine hits
    both sides alike (a probe taken on a busy machine must not cache a wrong verdict)."""
    steps = {precision: _probe_step(precision) for precision in ("fp32", "bf16")}
    for step in steps.values():
        step()  # warm up oneDNN's kernels
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for precision, step in steps.items():
            started = time.perf_counter()
            step()
            best[precision] = min(best[precision], time.perf_counter() - started)
    return best


@functools.cache
def cpu_prefers_bf16() -> bool:
    """Whether bf16 autocast trains faster than fp32 on this CPU (measured once; cached in memory and on disk)."""
    if not _cpu_has_native_bf16():
        return False
    identity = {"version": _PROBE_VERSION, "cpu": _cpu_model(), "torch": torch.__version__,
                "threads": torch.get_num_threads()}
    cache = _probe_cache_file()
    try:
        stored = json.loads(cache.read_text())
        if {k: stored.get(k) for k in identity} == identity:
            return bool(stored["bf16_faster"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    timed = _time_training_steps()
    fp32, bf16 = timed["fp32"], timed["bf16"]
    faster = fp32 / bf16 >= BF16_SPEEDUP_NEEDED
    logger.info("CPU precision probe on %s: fp32 %.1f ms, bf16 %.1f ms per step -> %s", identity["cpu"],
                1e3 * fp32, 1e3 * bf16, "bf16" if faster else "fp32")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({**identity, "fp32_s": fp32, "bf16_s": bf16, "bf16_faster": faster}, indent=2))
    except OSError as error:
        logger.debug("cannot cache the precision probe in %s: %s", cache, error)
    return faster


_CONVOLUTIONS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def conv_spatial_dims(model: nn.Module) -> int | None:
    """2 when the model's convolutions are all 2-D, 3 when all 3-D, None when it mixes them or has none."""
    dims = {module.weight.dim() - 2 for module in model.modules() if isinstance(module, _CONVOLUTIONS)}
    return dims.pop() if len(dims) == 1 else None


def model_allows_channels_last(model: nn.Module) -> bool:
    """True when one channels-last layout fits every convolution of the model (all 2-D or all 3-D)."""
    return conv_spatial_dims(model) is not None


def place_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    """Move ``model`` to the runtime's device and give its convolution weights the runtime's memory layout.

    ``Module.to(memory_format=...)`` would also re-lay out every other 4-D/5-D parameter (and fail on a 5-D one
    under the 2-D format), so only convolution weights are converted."""
    model = model.to(runtime.device)
    if runtime.channels_last:
        for module in model.modules():
            if isinstance(module, _CONVOLUTIONS):
                module.weight.data = module.weight.data.contiguous(memory_format=runtime.memory_format)
    return model


def resolve_runtime(
    device: str = "auto", precision: str = "auto", channels_last: str | bool = "auto",
    model: nn.Module | None = None,
) -> Runtime:
    """Pick device, precision and memory layout from the settings, this machine, and (for the layout) the model."""
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision must be one of {PRECISIONS}, got {precision!r}")
    if channels_last not in CHANNELS_LAST:
        raise ValueError(f"training.channels_last must be auto, true or false, got {channels_last!r}")
    if device == "auto":
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        resolved = torch.device(device)
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"training.device={device!r} but CUDA is not available on this machine")
    if precision == "auto":
        if resolved.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
        else:
            bf16 = resolved.type == "cpu" and cpu_prefers_bf16()
        precision = "bf16" if bf16 else "fp32"
    dims = 2 if model is None else conv_spatial_dims(model)
    if channels_last == "auto":
        layout = dims == 2 and resolved.type in ("cuda", "cpu") or dims == 3 and resolved.type == "cpu"
    else:
        layout = bool(channels_last)
        if layout and dims is None:
            raise ValueError(
                "training.channels_last=true needs a model whose convolutions are all 2-D or all 3-D; this model "
                "mixes them or has no convolution: use channels_last: auto or false"
            )
    return Runtime(resolved, precision, layout, dims or 2)
