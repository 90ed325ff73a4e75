"""The training DAG of a registered model in memory with ``SequentialRunner``: no CLI, no hooks, no MLflow.

Runs the real namespaced pipeline from the model-input bundle on: every fold shard, the pooled predictions, the
metrics of both selections, the generic and the task's figures, the scorecard and the report. Fold results go to
real ``FoldResultStore`` folders (a generator node streams into them); everything else stays in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.pickle import PickleDataset

import tests.training.toy  # noqa: F401  (registers tiny_motion_test with MMNet's task)
from microexpr.dag.shards import n_shards
from microexpr.dag.training import create_training_pipeline, train_shard
from microexpr.datasets.fold_results import FoldResultStore
from microexpr.datasets.protocol_results import ProtocolResultStore
from microexpr.training.results import FoldResult, ShardDone
from tests.training.toy import TINY_TASK, tiny_config, toy_inputs

MODEL = "tiny_motion_test"
SUBJECTS = [f"toy/sub{i}" for i in range(4)]


def loso_folds(shards: int) -> pd.DataFrame:
    """One fold per toy subject, spread over the shards (the split stage's table, by hand)."""
    return pd.DataFrame({
        "fold": [f"fold_{i:03d}" for i in range(4)],
        "shard": [i % shards for i in range(4)],
        "test_subjects": [[s] for s in SUBJECTS],
        "train_subjects": [[t for t in SUBJECTS if t != s] for s in SUBJECTS],
    })


def params(**overrides: object) -> dict[str, object]:
    block = {"seed": 0, "selection": "honest", "selections": ["honest", "oracle_epoch"], "log_every_epochs": 1,
             "model": {}, "task": TINY_TASK, "training": tiny_config(epochs=2, batch_size=6)}
    block.update(overrides)
    return block


def toy_sample_index(inputs: dict[str, np.ndarray]) -> pd.DataFrame:
    """The sample index rows of the toy bundle: its true labels and one AU per class (read by report figures)."""
    classes = np.asarray(inputs["classes"]).astype(str)
    y = np.asarray(inputs["y"], dtype=np.int64)
    return pd.DataFrame({"sample_id": np.asarray(inputs["sample_id"]).astype(str), "label": classes[y],
                         "aus": [[str(c + 1)] for c in y], "au_codes": [[int(c + 1)] for c in y]})


def catalog_for(tmp_path: Path, block: dict, inputs: dict[str, np.ndarray],
                sample_index: pd.DataFrame | None = None) -> DataCatalog:
    shards = n_shards()
    catalog = DataCatalog({
        **{f"{MODEL}.shard_{k}.{name}": FoldResultStore(path=str(tmp_path / f"shard_{k}"))
           for k in range(shards) for name in ("fold_results", "completed_folds")},
        # intermediate results the test inspects (a MemoryDataset is emptied once its last reader ran)
        **{f"{MODEL}.{name}": PickleDataset(filepath=str(tmp_path / f"{name}.pkl"))
           for name in ("predictions", "metrics", "training_history")},
        **{f"{MODEL}.{name}": ProtocolResultStore(path=str(tmp_path / "protocols"))
           for name in ("protocol_results", "protocol_result")},
    })
    meta = {"fingerprint": "toy-bundle", "classes": inputs["classes"].tolist(), "label_set": "toy3",
            "n_samples": len(inputs["sample_id"]), "n_subjects": 4, "excluded": []}
    feed = {f"{MODEL}.model_input": inputs, f"{MODEL}.model_input_meta": meta, "folds": loso_folds(shards),
            "sample_index": toy_sample_index(inputs) if sample_index is None else sample_index,
            "params:dataset": "synthetic", "params:split": {"protocol": "loso"},
            **{f"params:{MODEL}.{key}": value for key, value in block.items()}}
    for name, value in feed.items():
        catalog[name] = value
    return catalog


def test_training_dag_runs_in_memory_and_reports(tmp_path: Path) -> None:
    inputs = toy_inputs(24, n_classes=3, seed=4)
    pipeline = create_training_pipeline(MODEL).from_inputs(f"{MODEL}.model_input")
    outputs = SequentialRunner().run(pipeline, catalog_for(tmp_path, params(), inputs))
    predictions = pd.read_pickle(tmp_path / "predictions.pkl")
    assert sorted(set(predictions["selection"])) == ["honest", "oracle_epoch"]
    assert (predictions["selection"] == "honest").sum() == 24  # every sample tested once
    metrics = pd.read_pickle(tmp_path / "metrics.pkl")
    assert metrics["n_folds"] == 4 and set(metrics["selections"]) == {"honest", "oracle_epoch"}
    history = pd.read_pickle(tmp_path / "training_history.pkl")
    assert {"train_loss", "train_loss_ce", "lr"} <= set(history.columns) and len(history) == 4 * 2
    figures = outputs[f"{MODEL}.task_figures"].load()
    assert list(figures) == ["attention_overlay.png"]
    report = outputs[f"{MODEL}.report"].load()
    assert "attention_overlay.png" in report and "Run size" in report and "4 LOSO folds" in report
    assert len(list(tmp_path.glob("shard_*/*.npz"))) == 4
    # the run's protocol summary is stored for the next run's side-by-side table; alone, the report has none
    stored = ProtocolResultStore(path=str(tmp_path / "protocols")).load()
    assert list(stored) == [metrics["protocol_summary"]["key"]] and stored[metrics["protocol_summary"]["key"]][
        "selections"]["honest"]["uf1"] == pytest.approx(metrics["selections"]["honest"]["uf1"])
    assert [row["this_run"] for row in metrics["protocols"]] == [True]
    assert "Protocols side by side" not in report


def _run_shard(block: dict, inputs: dict[str, np.ndarray], completed: dict) -> list[FoldResult]:
    chunks = list(train_shard(inputs, {"fingerprint": "toy-bundle"}, loso_folds(1), completed, block["seed"],
                              block["selections"], block["model"], block["task"], block["training"], 1,
                              model=MODEL, shard=0, shards=1))
    assert isinstance(chunks[-1], ShardDone)
    return chunks[:-1]


def test_changing_the_seed_retrains_every_fold_and_the_same_seed_reuses_them() -> None:
    inputs = toy_inputs(16, n_classes=2, seed=5)
    first = _run_shard(params(), inputs, {})
    stored = {r.key: r for r in first}
    again = _run_shard(params(), inputs, stored)
    assert all(r.reused for r in again) and [r.key for r in again] == [r.key for r in first]
    reseeded = _run_shard(params(seed=1), inputs, stored)
    assert not any(r.reused for r in reseeded)
    assert {r.key for r in reseeded}.isdisjoint(stored)
    assert any(not r.predictions.equals(s.predictions) for r, s in zip(reseeded, first, strict=True))
    for change in ({"task": {**TINY_TASK, "frames": {"mode": "exact"}}}, {"selections": ["honest"]},
                   {"training": tiny_config(epochs=2, batch_size=6, accumulate_steps=2)}):
        changed = _run_shard(params(**change), inputs, stored)
        assert not any(r.reused for r in changed), change


def test_unknown_selection_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="oracle_epoch"):
        _run_shard(params(selections=["best_on_test"]), toy_inputs(8), {})
