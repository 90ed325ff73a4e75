"""Every Kedro env's configuration resolves and passes the validators of the code that consumes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from microexpr.data.index import resolve_options
from microexpr.data.synthetic import resolve_params
from microexpr.models import model_class
from microexpr.settings import CONFIG_LOADER_ARGS
from microexpr.training.loop import TrainConfig
from microexpr.training.sampling import validate_frames_config

CONF = Path(__file__).resolve().parents[1] / "conf"
ENVS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("base", "local"))


def load(env: str, kind: str) -> dict:
    loader = OmegaConfigLoader(str(CONF), env=env, **CONFIG_LOADER_ARGS)
    return loader[kind]


@pytest.mark.parametrize("env", ["local", *ENVS])
def test_parameters_of_every_env_validate(env: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    params = load(env, "parameters")
    resolve_options(params["ingest"])
    resolve_params(params["synthetic"])
    training = TrainConfig.from_params(params["mmnet"]["training"])
    assert training.epochs >= 1
    model = dict(params["mmnet"]["model"])
    accepted = set(model_class(model.pop("name")).__init__.__code__.co_varnames)
    assert set(model) <= accepted, set(model) - accepted
    assert params["dataset"] == "synthetic" and params["split"]["protocol"] in {"loso", "megc2019", "cross_dataset", "holdout"}


def test_catalog_of_every_env_resolves(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    for env in ["local", *ENVS]:
        catalog = load(env, "catalog")
        assert catalog["raw_dataset"]["source"] == "synthetic"
    test_catalog = load("test", "catalog")
    assert test_catalog["sample_index"]["filepath"].startswith(str(tmp_path))


def test_frames_modes_in_blocks_switch_without_inheriting_the_other_mode() -> None:
    cfg = {"mode": "rise_fraction", "frames": {"onset": 2}, "rise_fraction": {"onset_fraction": 0.05}}
    assert validate_frames_config(cfg) == {"mode": "rise_fraction", "onset_fraction": 0.05, "apex_fraction": 0.0375,
                                           "apex_after_fraction": 0.0}
    assert validate_frames_config({**cfg, "mode": "frames"})["onset"] == 2
    with pytest.raises(ValueError, match="unknown key"):
        validate_frames_config({"mode": "frames", "frames": {"onset_fraction": 0.1}})
