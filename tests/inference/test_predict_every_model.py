"""Every registered paper model can be saved as a full-data model, loaded and used by `microexpr predict`.

Each model is built as training builds it (``--env test`` settings, its task's catalog resources such as a text
encoder), keeps the tensors the full-data node keeps (``Task.inference_modules``), goes through the catalog's
files and predicts the synthetic clip from its card alone (no resources, recipes from the card). A model added
later is covered by this test without editing it; demonstration models are tests/inference/test_predict.py's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from microexpr.datasets.final_model import read_final_model, write_final_model
from microexpr.inference.card import instantiate
from microexpr.inference.clip import open_clip
from microexpr.inference.predict import predict_clip
from microexpr.models import available_models, model_class, task_class
from tests.inference.clips import CLASSES, catalog_resources, env_settings, untrained_final_model

PROJECT = Path(__file__).resolve().parents[2]
LABEL_MAPS = yaml.safe_load((PROJECT / "conf/base/labels.yml").read_text())
PAPER_MODELS = [name for name in available_models()  # the project's models, not the toys tests register
                if model_class(name).__module__.startswith("microexpr.models.") and not task_class(name).demonstration]


def test_every_paper_model_is_checked() -> None:
    assert {"mmnet", "mol", "attr_contrast"} <= set(PAPER_MODELS)


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_save_load_predict_for_every_paper_model(model, clip_files, tmp_path) -> None:
    kept = task_class(model).inference_modules
    final = untrained_final_model(model, settings=env_settings(model, tmp_path / "data"),
                                  resources=catalog_resources(model, tmp_path / "data"))
    if kept:  # a training-only branch (e.g. attr_contrast's text encoder) is not saved
        assert all("." not in name or name.split(".", 1)[0] in kept for name in final.state)
    write_final_model(tmp_path / model, final)
    loaded = read_final_model(tmp_path / model)
    assert loaded.card["inference_modules"] == list(kept)

    rebuilt, _ = instantiate(loaded)  # from the card alone: no catalog resources
    assert {name for name, _ in rebuilt.named_children()} >= set(kept)
    state = rebuilt.state_dict()
    assert set(state) == set(final.state)
    assert all(torch.equal(state[name], final.state[name]) for name in state)

    result = predict_clip(loaded, open_clip(clip_files["folder"], tmp_path / "scratch"), apex=clip_files["apex"],
                          label_maps=LABEL_MAPS)
    assert result.classes == CLASSES and result.key_frames.apex == clip_files["apex"]
    assert np.isfinite(result.probabilities).all() and abs(float(result.probabilities.sum()) - 1.0) < 1e-5
    assert "prediction.png" in result.figures


def test_a_card_whose_kept_submodules_differ_from_the_task_fails_clearly() -> None:
    from microexpr.inference.card import CardMismatch, check_card, drop_training_modules, inference_state
    from microexpr.training.task import check_task_class

    card = untrained_final_model("mmnet").card
    card["inference_modules"] = ["backbone"]
    with pytest.raises(CardMismatch, match="weights hold the submodules"):
        check_card(card)
    net = torch.nn.Sequential()
    net.add_module("kept", torch.nn.Linear(2, 2))
    net.add_module("text", torch.nn.Linear(2, 2))
    assert set(inference_state(net.state_dict(), ("kept",))) == {"kept.weight", "kept.bias"}
    assert set(drop_training_modules(net, ("kept",)).state_dict()) == {"kept.weight", "kept.bias"}
    with pytest.raises(ValueError, match="no submodules"):
        drop_training_modules(net, ("absent",))
    bad = type("Bad", (task_class("mmnet"),), {"inference_modules": ("encoder.layer",)})
    with pytest.raises(TypeError, match="inference_modules"):
        check_task_class(bad, "bad", ["onset", "apex"])


def test_the_full_data_node_saves_only_the_inference_modules(monkeypatch) -> None:
    """The node keeps the tensors of ``Task.inference_modules`` and the card lists them (toy model, whose task
    here says that ``gate`` and ``drop`` are training-only)."""
    from microexpr.dag.final_model import train_final_model
    from tests.inference.test_final_model_config import _node_args

    args = _node_args(True)  # registers tiny_motion_test (an MMNetTask)
    monkeypatch.setattr(task_class("tiny_motion_test"), "inference_modules", ("conv", "bn", "fc"))
    final = train_final_model(**args)
    assert final.card["inference_modules"] == ["conv", "bn", "fc"]
    assert final.state and {name.split(".")[0] for name in final.state} == {"conv", "bn", "fc"}
