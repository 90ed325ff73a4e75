"""Stored key-frame windows against the training windows each Kedro env configures (docs/models.md, MMNet).

Training draws the onset and apex frames among the *stored* offsets inside its window
(microexpr.training.sampling), so a window wider than the storage is silently narrowed. The configs are loaded as
``kedro run --env <env>`` loads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kedro.config import OmegaConfigLoader

from microexpr.dag.preprocess import DEPENDENT_FEATURES, feature_config
from microexpr.features.recipes import key_frame_windows
from microexpr.settings import CONFIG_LOADER_ARGS
from microexpr.training.sampling import allowed_windows

PROJECT = Path(__file__).resolve().parents[2]
RISES = np.arange(1, 161)  # CASME II clips are 24..141 frames long onset..offset


def env_params(env: str) -> tuple[dict, dict]:
    """``preprocess.key_frames`` and MMNet's training ``frames`` settings of a Kedro env (soft-merged over base)."""
    params = OmegaConfigLoader(conf_source=str(PROJECT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]
    return params["preprocess"]["key_frames"], params["mmnet"]["task"]["frames"]


def clip(rise: int, fall: int) -> dict:
    """A complete clip (every frame present) with onset 100 and the given rise and fall."""
    onset, apex = 100, 100 + rise
    return {"onset": onset, "apex": apex, "offset": apex + fall, "frame_numbers": list(range(onset, apex + fall + 1))}


def uncovered(storage: dict, frames: dict, rises: np.ndarray, falls: np.ndarray) -> list[tuple[int, int, str]]:
    """(rise, fall, which window) wherever the training window holds an offset that is not stored."""
    windows = allowed_windows(frames, rises, falls)
    out = []
    for k, (rise, fall) in enumerate(zip(rises.tolist(), falls.tolist(), strict=True)):
        sample = clip(rise, fall)
        on_numbers, ap_numbers = key_frame_windows(sample, storage)
        stored_on = {n - sample["onset"] for n in on_numbers}
        stored_ap = {n - sample["apex"] for n in ap_numbers}
        if not set(range(windows.onset[k, 0], windows.onset[k, 1] + 1)) <= stored_on:
            out.append((rise, fall, "onset"))
        if not set(range(windows.apex[k, 0], windows.apex[k, 1] + 1)) <= stored_ap:
            out.append((rise, fall, "apex"))
    return out


@pytest.mark.parametrize("env", ["mmnet_reference", "mmnet_reference_3class"])
def test_reference_envs_store_their_whole_training_window(env: str) -> None:
    storage, frames = env_params(env)
    assert frames["mode"] == "rise_fraction"
    assert uncovered(storage, frames, RISES, RISES) == []
    on_numbers, ap_numbers = key_frame_windows(clip(140, 140), storage)
    assert len(on_numbers) > 4 and len(ap_numbers) > 7  # beyond the default's +-3 for a long rise


def test_default_env_cap_never_binds_its_own_window() -> None:
    storage, frames = env_params("local")
    assert frames["mode"] == "frames"
    assert uncovered(storage, frames, RISES, RISES) == []


def test_default_storage_caps_the_reference_windows_from_the_documented_rises() -> None:
    """docs/models.md: with +-3 stored, the 5-class reference window is cut from a rise of 107 frames, the 3-class
    onset window from 80, and its apex-after window from a fall of 107."""
    storage, _ = env_params("local")
    five = env_params("mmnet_reference")[1]
    three = env_params("mmnet_reference_3class")[1]
    short_fall = np.zeros_like(RISES)
    assert min(r for r, _, _ in uncovered(storage, five, RISES, short_fall)) == 107
    assert min(r for r, _, w in uncovered(storage, three, RISES, short_fall) if w == "onset") == 80
    long_rise = np.full_like(RISES, 20)
    assert min(f for _, f, w in uncovered(storage, three, long_rise, RISES) if w == "apex") == 107


@pytest.mark.parametrize("env", ["local", "quick", "test", "benchmark", "mmnet_reference", "mmnet_reference_3class"])
def test_every_env_preprocess_block_validates(env: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    params = OmegaConfigLoader(conf_source=str(PROJECT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]
    for feature in DEPENDENT_FEATURES:
        cfg = feature_config(feature, params["preprocess"][feature])
        assert "workers" not in cfg


def test_fraction_settings_are_checked() -> None:
    base = {"size": 8, "onset_after": 3, "apex_before": 3, "apex_after": 3}
    with pytest.raises(ValueError, match="onset_fraction is not a setting"):
        feature_config("key_frames", {**base, "onset_fraction": 0.05})
    with pytest.raises(ValueError, match="apex_after_fraction must be a non-negative number"):
        feature_config("key_frames", {**base, "apex_after_fraction": -0.1})
