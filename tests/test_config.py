"""Every Kedro env's configuration resolves and passes the validators of the code that consumes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from microexpr.data.index import resolve_options
from microexpr.data.synthetic import resolve_params
from microexpr.models import available_models, build_task, constructor_keys, model_class
from microexpr.settings import CONFIG_LOADER_ARGS
from microexpr.training.loop import TrainConfig
from microexpr.training.sampling import validate_frames_config

CONF = Path(__file__).resolve().parents[1] / "conf"
ENVS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("base", "local"))
# Envs named after a real-data protocol read licensed data (docs/comparison.md); every other env reads synthetic.
DATA_ENVS = {"cross_casme2_smic": "megc2019", "cross_samm_smic": "megc2019", "megc2019": "megc2019"}


def load(env: str, kind: str) -> dict:
    loader = OmegaConfigLoader(str(CONF), env=env, **CONFIG_LOADER_ARGS)
    return loader[kind]


@pytest.mark.parametrize("env", ["local", *ENVS])
def test_parameters_of_every_env_validate(env: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    params = load(env, "parameters")
    resolve_options(params["ingest"])
    resolve_params(params["synthetic"])
    models = [name for name in available_models() if name in params]
    assert "mmnet" in models
    for name in models:
        block = params[name]
        assert TrainConfig.from_params(block["training"]).epochs >= 1
        build_task(name, block.get("task"))  # unknown or bad task settings raise here
        unknown = set(block["model"]) - constructor_keys(model_class(name))
        assert not unknown, f"{env}: {name}.model has keys its constructor does not take: {unknown}"
        assert isinstance(block["seed"], int) and block["selection"] in block["selections"]
    assert params["dataset"] == DATA_ENVS.get(env, "synthetic") and params["split"]["protocol"] in {"loso", "megc2019", "cross_dataset", "holdout"}


def test_catalog_of_every_env_resolves(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    for env in ["local", *ENVS]:
        catalog = load(env, "catalog")
        assert catalog["raw_dataset"]["source"] == DATA_ENVS.get(env, "synthetic")
    test_catalog = load("test", "catalog")
    assert test_catalog["sample_index"]["filepath"].startswith(str(tmp_path))


def _paths(catalog: dict) -> dict[str, str]:
    return {name: str(entry.get("filepath") or entry.get("path") or entry.get("predictions"))
            for name, entry in catalog.items() if isinstance(entry, dict) and "type" in entry}


def test_an_env_that_changes_the_protocol_writes_its_results_apart_and_reuses_the_features(tmp_path) -> None:
    """--env attr_contrast_paper (another label set and protocol) shares the raw data, the feature store, the keyed
    fold results and the protocol summaries with the default env, and writes everything else elsewhere; a
    runtime ``results_root`` moves the same entries for one run (microexpr sweep)."""
    base, paper = _paths(load("local", "catalog")), _paths(load("attr_contrast_paper", "catalog"))
    shared = {name for name in base if base[name] == paper[name]}
    assert {"raw_dataset", "synthetic_raw", "attr_clips", "key_frames", "{model}.shard_{shard}.fold_results",
            "{model}.shard_{shard}.completed_folds", "{model}.protocol_results", "{model}.protocol_result"} <= shared
    moved = {"sample_index", "folds", "{model}.model_input", "{model}.predictions", "{model}.metrics",
             "{model}.report", "{model}.final_model", "compare.stored_results", "compare.report"}
    for name in moved:
        assert name not in shared and paper[name].startswith("data/attr_contrast_paper/"), name
    loader = OmegaConfigLoader(str(CONF), env="quick", runtime_params={"results_root": str(tmp_path)},
                               **CONFIG_LOADER_ARGS)
    quick = _paths(loader["catalog"])
    assert all(quick[name].startswith(str(tmp_path)) for name in moved)
    assert quick["attr_clips"].startswith("data/quick/04_feature")


def test_frames_modes_in_blocks_switch_without_inheriting_the_other_mode() -> None:
    cfg = {"mode": "rise_fraction", "frames": {"onset": 2}, "rise_fraction": {"onset_fraction": 0.05}}
    assert validate_frames_config(cfg) == {"mode": "rise_fraction", "onset_fraction": 0.05, "apex_fraction": 0.0375,
                                           "apex_after_fraction": 0.0}
    assert validate_frames_config({**cfg, "mode": "frames"})["onset"] == 2
    with pytest.raises(ValueError, match="unknown key"):
        validate_frames_config({"mode": "frames", "frames": {"onset_fraction": 0.1}})


@pytest.mark.parametrize("env", ["mmnet_reference", "mmnet_reference_3class"])
def test_reference_envs_train_as_the_reference_code(env: str, monkeypatch, tmp_path) -> None:
    """fp32 (no autocast in the reference) and torchvision's nearest rotation, never a demo setting."""
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    mmnet = load(env, "parameters")["mmnet"]
    assert mmnet["training"]["precision"] == "fp32"
    assert mmnet["task"]["augment"]["interpolation"] == "nearest"
    assert mmnet["task"]["augment"]["brightness"] == mmnet["task"]["augment"]["saturation"] == 0.0
    assert mmnet["training"]["scheduler"].get("warmup_epochs", 0) == 0


@pytest.mark.parametrize("env", ["local", *ENVS])
def test_only_the_quick_demo_uses_a_warm_up(env: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    params = load(env, "parameters")
    warmups = {name: (params[name]["training"].get("scheduler") or {}).get("warmup_epochs", 0)
               for name in available_models() if name in params}
    if env == "quick":
        assert warmups["mmnet"] > 0
    else:
        assert not any(warmups.values()), warmups


@pytest.mark.parametrize("env", ["local", *ENVS])
def test_every_env_keeps_the_codes_mol_head_dropout(env: str, monkeypatch, tmp_path) -> None:
    """MOL's MER-head dropout is the code's 0.5 everywhere: lowering it for the quick demo made it worse
    (docs/models.md, MOL quick demo), so no env overrides it."""
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    assert load(env, "parameters")["mol"]["model"]["mer_dropout"] == 0.5


@pytest.mark.parametrize(("env", "train"), [("cross_casme2_smic", "casme2"), ("cross_samm_smic", "samm")])
def test_cross_dataset_and_composite_envs_are_one_command_each(env: str, train: str, monkeypatch, tmp_path) -> None:
    """MOL's Table VII (train CASME II or SAMM, test SMIC, 3 classes) and the MEGC2019 composite as named envs."""
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    params = load(env, "parameters")
    assert params["label_set"] == "megc3" and params["split"]["protocol"] == "cross_dataset"
    assert params["split"]["options"]["train"] == train and params["split"]["options"]["test"] == "smic_hs"
    assert load(env, "catalog")["compare.leaderboard"]["filepath"].startswith(f"data/{env}/")
    composite = load("megc2019", "parameters")
    assert composite["split"]["protocol"] == "megc2019" and composite["label_set"] == "megc3"
