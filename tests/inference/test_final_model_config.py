"""Every registered model's parameter block says whether it trains a full-data model: on in conf/base (the paper
envs), off in conf/quick and conf/test (tests turn it on with --params)."""

from __future__ import annotations

import pytest

from microexpr.dag.final_model import create_final_model_pipeline
from microexpr.models import available_models
from tests.test_config import load

EXPECTED = {"base": True, "quick": False, "test": False}


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_every_model_block_sets_final_model(env: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    params = load(env, "parameters") if env != "base" else load("local", "parameters")
    models = [m for m in available_models() if m in params]
    assert "mmnet" in models
    for model in models:
        assert params[model].get("final_model") is EXPECTED[env], f"{env}: {model}.final_model"


@pytest.mark.parametrize("model", ["mmnet", "seam_demo"])
def test_final_model_node_reads_only_what_the_card_needs(model: str) -> None:
    pipeline = create_final_model_pipeline(model)
    (node,) = pipeline.nodes
    assert node.name == f"{model}.train_final_model" and node.outputs == [f"{model}.final_model"]
    assert {f"{model}.model_input", f"{model}.metrics", f"params:{model}.final_model",
            "params:preprocess.face_alignment", "params:preprocess.key_frames"} <= set(node.inputs)
    assert not any(i.startswith("params:preprocess.") and i.endswith(("mol_clips", "attr_clips")) for i in node.inputs)


def _node_args(enabled: bool) -> dict:
    import tests.training.toy  # noqa: F401  (registers tiny_motion_test)
    from tests.inference.clips import PREPROCESS
    from tests.training.toy import TINY_TASK, tiny_config, toy_inputs

    inputs = toy_inputs(12, n_classes=3, seed=1)
    meta = {"classes": inputs["classes"].tolist(), "label_set": "toy3", "n_samples": 12, "n_subjects": 4,
            "datasets": ["toy"], "fingerprint": "toy-bundle"}
    metrics = {"selections": {"honest": {"uf1": 0.4, "uar": 0.5, "acc": 0.5, "wf1": 0.45},
                              "oracle_epoch": {"uf1": 0.9}}, "split_protocol": "loso", "n_folds": 4,
               "n_samples": 12, "leak": None, "tags": {}}
    return dict(model_input=inputs, model_input_meta=meta, metrics=metrics, seed=0, model_params={},
                task_params=TINY_TASK, training=tiny_config(epochs=2, batch_size=6), enabled=enabled,
                dataset="toy", model="tiny_motion_test",
                preprocess_face_alignment=PREPROCESS["face_alignment"], preprocess_key_frames=PREPROCESS["key_frames"])


def test_the_node_trains_on_every_sample_and_quotes_the_honest_loso_metrics() -> None:
    from microexpr.dag.final_model import train_final_model
    from microexpr.inference.card import check_card, instantiate

    final = train_final_model(**_node_args(True))
    card = final.card
    assert final.trained and card["trained_on"]["n_samples"] == 12 and card["full_data_training"]["epochs"] == 2
    assert card["loso_metrics"]["uf1"] == 0.4 and card["loso_metrics"]["selection"] == "honest"  # never the oracle's
    assert card["loso_metrics"]["accuracy"] == 0.5 and card["loso_metrics"]["wf1"] == 0.45
    assert card["preprocessing"]["key_frames"]["size"] == 64 and "workers" not in card["preprocessing"]["key_frames"]
    card["weights"] = {"file": "weights.safetensors"}
    check_card(card)
    model, _ = instantiate(final)
    assert not model.training

    skipped = train_final_model(**_node_args(False))
    assert skipped.state is None and "final_model was false" in skipped.card["skipped"]
    with pytest.raises(ValueError, match="true or false"):
        train_final_model(**{**_node_args(True), "enabled": "false"})
