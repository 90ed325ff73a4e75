"""A task's run labels (``Task.run_tags``, ``Task.leak``) reach the metrics, the report, the titles and MLflow names.

A leaky setting (a paper feeding test-sample annotations to its model) must be visible in every output; these tests
register a throw-away model whose task leaks under one setting and check each place that names a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
from torch import nn

import microexpr.models as registry
from microexpr.dag.training import evaluate_predictions, labelled_model, render_report, scorecard_node
from microexpr.hooks import _run_name, task_labels
from microexpr.models.seam_demo import SeamDemoTask
from microexpr.training.task import Task
from tests.evaluation.prediction_tables import CLASSES, make_table


@dataclass(frozen=True)
class LeakySettings:
    au_source: str = "predicted"


class LeakyTask(SeamDemoTask):
    settings_class = LeakySettings

    def run_tags(self) -> dict[str, str]:
        return {"au_source": self.settings.au_source}

    def leak(self) -> str | None:
        return "au_leak" if self.settings.au_source == "annotation" else None


class LeakyNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()

    def forward(self, onset, apex, aus):  # the seam demo's inputs
        raise NotImplementedError


@pytest.fixture()
def leaky_model(monkeypatch: pytest.MonkeyPatch) -> str:
    registry._discover_models()
    monkeypatch.setitem(registry._REGISTRY, "leaky_test", (LeakyNet, LeakyTask))
    return "leaky_test"


def _metrics(model: str, task_params: dict | None) -> dict:
    table = pd.concat([make_table(), make_table(selection="oracle_epoch")], ignore_index=True)
    meta = {"classes": CLASSES, "label_set": "3class", "n_samples": 10, "n_subjects": 4}
    return evaluate_predictions(table, meta, "honest", "casme2", {"protocol": "loso"}, task_params, model=model)


def test_base_task_has_no_labels() -> None:
    assert Task().run_tags() == {}
    assert Task().leak() is None


def test_leak_and_tags_reach_metrics_and_titles(leaky_model: str) -> None:
    honest = _metrics(leaky_model, {"au_source": "predicted"})
    leaky = _metrics(leaky_model, {"au_source": "annotation"})
    assert honest["tags"] == {"au_source": "predicted"} and honest["leak"] is None
    assert leaky["tags"] == {"au_source": "annotation"} and leaky["leak"] == "au_leak"
    assert labelled_model(honest) == leaky_model
    assert labelled_model(leaky) == f"{leaky_model} · au_leak"


def test_leak_banner_and_tags_in_report(leaky_model: str) -> None:
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]})
    reports = {}
    for source in ("predicted", "annotation"):
        metrics = _metrics(leaky_model, {"au_source": source})
        reports[source] = render_report(scorecard_node(metrics), metrics, history, [], seed=1, training={})
    assert "au_source" in reports["predicted"] and "predicted" in reports["predicted"]
    assert "au_leak" not in reports["predicted"]
    assert reports["annotation"].startswith(f"# {leaky_model} · au_leak")
    assert "Not an honest result" in reports["annotation"]


def test_mlflow_run_name_and_tags_name_the_leak(leaky_model: str) -> None:
    params = {"dataset": "casme2", leaky_model: {"selection": "honest", "task": {"au_source": "annotation"}}}
    assert task_labels(leaky_model, params) == ({"au_source": "annotation"}, "au_leak")
    assert _run_name([leaky_model], params, {}).endswith("· honest · au_leak")
    params[leaky_model]["task"]["au_source"] = "predicted"
    assert "au_leak" not in _run_name([leaky_model], params, {})
    assert task_labels("mmnet", {"mmnet": {}}) == ({}, None)
