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
