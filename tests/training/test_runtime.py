"""Device, precision and memory layout: the CPU precision probe decides bf16 vs fp32; channels_last only for 2-D convs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from microexpr.training import runtime as rt
from microexpr.training.runtime import cpu_prefers_bf16, model_allows_channels_last, resolve_runtime


@pytest.fixture
def fresh_probe(monkeypatch, tmp_path):
    """A probe with an empty cache folder and no verdict remembered in this process."""
    monkeypatch.setenv("MICROEXPR_CACHE_DIR", str(tmp_path))
    cpu_prefers_bf16.cache_clear()
    yield tmp_path
    cpu_prefers_bf16.cache_clear()


def test_explicit_settings_are_taken_as_given() -> None:
    runtime = resolve_runtime("cpu", "fp32", False)
    assert (runtime.device.type, runtime.precision, runtime.channels_last) == ("cpu", "fp32", False)
    assert runtime.memory_format == torch.contiguous_format
    assert resolve_runtime("cpu", "bf16", True).precision == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_runtime("cpu", "fp16", False)


def test_cpu_auto_precision_follows_the_measured_probe_and_caches_it(fresh_probe, monkeypatch) -> None:
    monkeypatch.setattr(rt, "_cpu_has_native_bf16", lambda: True)
    timings = {"fp32": 1.0, "bf16": 1.6}  # bf16 slower, as measured on an AVX512-BF16 CPU without AMX
    monkeypatch.setattr(rt, "_time_training_steps", lambda rounds=5: dict(timings))
    assert resolve_runtime("cpu", "auto", False).precision == "fp32"
    stored = json.loads((fresh_probe / "cpu_precision_probe.json").read_text())
    assert stored["bf16_faster"] is False and stored["fp32_s"] == 1.0

    cpu_prefers_bf16.cache_clear()  # a new process: the file answers, nothing is timed again
    monkeypatch.setattr(rt, "_time_training_steps", lambda *a, **k: pytest.fail("the cached verdict was not used"))
    assert resolve_runtime("cpu", "auto", False).precision == "fp32"

    (fresh_probe / "cpu_precision_probe.json").unlink()
    cpu_prefers_bf16.cache_clear()
    monkeypatch.setattr(rt, "_time_training_steps", lambda rounds=5: {"fp32": 2.0, "bf16": 1.0})
    assert resolve_runtime("cpu", "auto", False).precision == "bf16"


def test_cpu_without_native_bf16_never_probes(fresh_probe, monkeypatch) -> None:
    monkeypatch.setattr(rt, "_cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(rt, "_time_training_steps", lambda *a, **k: pytest.fail("probed without native bf16"))
    assert resolve_runtime("cpu", "auto", False).precision == "fp32"
    assert not (fresh_probe / "cpu_precision_probe.json").exists()


def test_the_real_probe_times_both_precisions_without_moving_the_global_rng() -> None:
    before = torch.random.get_rng_state()
    timed = rt._time_training_steps(rounds=1)
    assert set(timed) == {"fp32", "bf16"} and all(t > 0 for t in timed.values())
    assert torch.equal(torch.random.get_rng_state(), before)


def test_channels_last_auto_only_for_models_with_2d_convolutions_only() -> None:
    conv3d = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Conv2d(4, 4, 1))
    linear = nn.Linear(4, 2)
    assert model_allows_channels_last(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2)))
    assert not model_allows_channels_last(conv3d)
    assert not model_allows_channels_last(linear)
    assert resolve_runtime("cpu", "fp32", "auto", nn.Conv2d(3, 4, 3)).channels_last
    assert not resolve_runtime("cpu", "fp32", "auto", conv3d).channels_last
    assert resolve_runtime("cpu", "fp32", "auto").channels_last  # no model given: the device decides
    with pytest.raises(ValueError, match="5-D"):
        resolve_runtime("cpu", "fp32", True, conv3d)
