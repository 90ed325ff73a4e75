"""Device, precision and memory layout: the CPU precision probe decides bf16 vs fp32; the channels-last layout
follows the rank of the convolutions."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from microexpr.training import runtime as rt
from microexpr.training.augment import to_input_tensor
from microexpr.training.runtime import (
    conv_spatial_dims,
    cpu_prefers_bf16,
    model_allows_channels_last,
    place_model,
    resolve_runtime,
)


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


def test_channels_last_auto_follows_the_rank_of_the_convolutions() -> None:
    mixed = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Conv2d(4, 4, 1))
    conv3d = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Linear(4, 2))
    linear = nn.Linear(4, 2)
    assert conv_spatial_dims(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2))) == 2
    assert conv_spatial_dims(conv3d) == 3
    assert conv_spatial_dims(mixed) is None and conv_spatial_dims(linear) is None
    assert not model_allows_channels_last(mixed) and not model_allows_channels_last(linear)
    two_d = resolve_runtime("cpu", "fp32", "auto", nn.Conv2d(3, 4, 3))
    assert two_d.channels_last and two_d.memory_format == torch.channels_last
    three_d = resolve_runtime("cpu", "fp32", "auto", conv3d)
    assert three_d.channels_last and three_d.memory_format == torch.channels_last_3d
    assert not resolve_runtime("cpu", "fp32", "auto", mixed).channels_last
    assert resolve_runtime("cpu", "fp32", "auto").channels_last  # no model given: the device decides
    with pytest.raises(ValueError, match="mixes them"):
        resolve_runtime("cpu", "fp32", True, mixed)


class _GatedConv(nn.Module):
    """A 2-D convolution beside a 5-D broadcast parameter (SAMER's shuffle-attention gates look like this)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = nn.Parameter(torch.randn(1, 2, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return (y.reshape(y.shape[0], 2, 2, *y.shape[2:]) * self.gate).flatten(1, 2)


def test_place_model_lays_out_convolution_weights_only() -> None:
    model = _GatedConv()
    gate_strides = model.gate.stride()
    runtime = resolve_runtime("cpu", "fp32", "auto", model)
    placed = place_model(model, runtime)  # Module.to(memory_format=channels_last) raises on the 5-D gate
    assert placed.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not placed.conv.weight.is_contiguous()
    assert placed.gate.stride() == gate_strides


def test_channels_last_3d_training_step_matches_the_contiguous_one() -> None:
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                              nn.Conv3d(8, 4, 3, stride=2), nn.AdaptiveAvgPool3d(1), nn.Flatten())
    laid_out = place_model(copy.deepcopy(reference), resolve_runtime("cpu", "fp32", "auto", reference))
    assert laid_out[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    clips = np.random.default_rng(0).integers(0, 256, (2, 6, 10, 10, 3), dtype=np.uint8)  # (N, T, H, W, C)
    plain = to_input_tensor(clips, (0.5,) * 3, (0.25,) * 3, channels_last=False)
    nd = to_input_tensor(clips, (0.5,) * 3, (0.25,) * 3, channels_last=True)
    assert nd.is_contiguous(memory_format=torch.channels_last_3d) and not nd.is_contiguous()
    assert torch.equal(plain, nd)
    outputs = [model(x) for model, x in ((reference, plain), (laid_out, nd))]
    for out in outputs:
        out.square().sum().backward()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(laid_out[0].weight.grad, reference[0].weight.grad, rtol=1e-4, atol=1e-4)
