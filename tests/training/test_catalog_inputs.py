"""The seam's ``Task.catalog_inputs``: catalog entries (e.g. a pretrained text encoder loaded by a Kedro dataset)
reach the task as ``resources`` in the bundle node and in every shard node, and become model constructor options
through ``Task.model_options``; a task that names none (the default) gets no extra node input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from microexpr.dag.final_model import create_final_model_pipeline
from microexpr.dag.training import build_model_input, create_training_pipeline
from microexpr.models import build_task, register_model
from microexpr.training.loop import train_fold
from microexpr.training.task import InputSpec, Task, check_task_class

FAST = {"epochs": 1, "batch_size": 4, "precision": "fp32", "report_samples": 0}


class ScaledTask(Task):
    """Vectors in; the catalog entry ``toy_scale`` (a float) becomes the model's ``scale`` option."""

    model_inputs = {"x": InputSpec(arrays=("x",), kind="vector", channels=None, mean=None, std=None,
                                   geometric=False, colour=False)}
    catalog_inputs = ("toy_scale",)

    @classmethod
    def example_arrays(cls, n, n_classes, rng, size=32):
        return {"x": rng.normal(size=(n, 3)).astype(np.float32)}

    def sample_arrays(self, row, features):
        return {"x": np.full(3, self.resources["toy_scale"], dtype=np.float32)}

    def train_batch(self, fold, batch_pos, streams, runtime):
        return {"x": torch.from_numpy(fold.data.arrays["x"][fold.train[batch_pos]])}

    def predict_inputs(self, inputs, rows, runtime):
        return {"x": torch.from_numpy(inputs["x"][rows])}

    def model_options(self):
        return {"scale": self.resources["toy_scale"]} if "toy_scale" in self.resources else {}


@register_model("toy_catalog_input_test", task=ScaledTask)
class ScaledNet(nn.Module):
    built_with: list[float] = []

    def __init__(self, num_classes: int, *, scale: float = 1.0) -> None:
        super().__init__()
        ScaledNet.built_with.append(scale)
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _node_inputs(model: str) -> dict[str, list[str]]:
    return {node.name.split(".")[-1] + ("" if "shard" not in node.name else node.name.split(".")[1]): node.inputs
            for node in create_training_pipeline(model).nodes}


def test_catalog_inputs_are_wired_into_the_bundle_and_every_shard_node_unnamespaced() -> None:
    inputs = _node_inputs("toy_catalog_input_test")
    shard_nodes = [name for name in inputs if name.startswith("train_shard")]
    assert shard_nodes and all("toy_scale" in inputs[name] for name in shard_nodes)
    assert "toy_scale" in inputs["build_model_input"]
    assert "toy_scale" in create_training_pipeline("toy_catalog_input_test").inputs()
    final = create_final_model_pipeline("toy_catalog_input_test")
    assert "toy_scale" in final.nodes[0].inputs and "toy_scale" in final.inputs()


def test_a_task_without_catalog_inputs_gets_no_extra_node_input() -> None:
    assert Task.catalog_inputs == ()
    inputs = _node_inputs("mmnet")
    assert set(inputs["build_model_input"]) == {"sample_index", "label_maps", "params:mmnet.task", "key_frames"}
    shard_nodes = [name for name in inputs if name.startswith("train_shard")]
    assert shard_nodes and all(inputs[name][-1] == "params:mmnet.log_every_epochs" for name in shard_nodes)


def test_resources_reach_the_task_and_the_model_constructor() -> None:
    task = build_task("toy_catalog_input_test", None, {"toy_scale": 2.5})
    assert task.resources["toy_scale"] == 2.5
    rng = np.random.default_rng(0)
    bundle = {**task.example_arrays(8, 2, rng), "sample_id": np.array([f"s{i}" for i in range(8)]),
              "y": (np.arange(8) % 2).astype(np.int64), "classes": np.array(["a", "b"])}
    ScaledNet.built_with.clear()
    train_fold("toy_catalog_input_test", {}, bundle, np.arange(6), np.arange(6, 8), FAST, 0, task_cfg=task)
    assert ScaledNet.built_with == [2.5]
    with pytest.raises(ValueError, match="catalog inputs"):
        train_fold("toy_catalog_input_test", {"scale": 1.0}, bundle, np.arange(6), np.arange(6, 8), FAST, 0,
                   task_cfg=task)
    with pytest.raises(ValueError, match="catalog_inputs"):
        build_task("toy_catalog_input_test", None, {"other": 1})


def test_the_bundle_node_splits_features_from_catalog_inputs() -> None:
    import pandas as pd

    class Table:  # a feature table with one ok sample
        manifest = pd.DataFrame({"sample_id": ["s0"], "status": ["ok"], "reason": [""]})

        def get(self, sid):
            return {}

        def key_of(self, sid):
            return "k"

    index = pd.DataFrame({"sample_id": ["s0"], "dataset": ["synthetic"], "subject": ["sub01"],
                          "fold_subject": ["synthetic/sub01"], "label": ["happiness"], "label_id": [0],
                          "label_set": ["emotion5"]})
    ScaledTask.features = ("toy_feature",)
    try:
        labels = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf/base/labels.yml").read_text())
        bundle, _ = build_model_input(index, labels, None, model="toy_catalog_input_test", toy_feature=Table(),
                                      toy_scale=4.0)
    finally:
        ScaledTask.features = ()
    np.testing.assert_array_equal(bundle["x"], np.full((1, 3), 4.0, dtype=np.float32))


def test_registration_refuses_catalog_inputs_that_are_not_entry_names() -> None:
    bad = type("Bad", (ScaledTask,), {"catalog_inputs": ["toy_scale"]})
    with pytest.raises(TypeError, match="catalog_inputs"):
        check_task_class(bad, "bad", ["x"])
    clash = type("Clash", (ScaledTask,), {"catalog_inputs": ("folds",)})
    with pytest.raises(TypeError, match="clash"):
        check_task_class(clash, "clash", ["x"])
