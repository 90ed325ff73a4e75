"""The task's report figures may read the shown test samples' annotations, joined after prediction (evaluation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from kedro.runner import SequentialRunner

from microexpr.dag.training import create_training_pipeline, report_annotations
from microexpr.models.mmnet import MMNetTask
from tests.pipelines.test_training_pipeline import MODEL, catalog_for, params, toy_sample_index
from tests.training.toy import toy_inputs


def test_report_annotations_follow_the_extras_rows() -> None:
    extras = {"sample_ids": np.array(["b", "a"]), "fold": np.array(["f1", "f0"]), "z": np.zeros((2, 3))}
    predictions = pd.DataFrame({"sample_id": ["a", "a", "b", "c"], "fold": ["f0", "f0", "f1", "f2"],
                                "selection": ["honest", "oracle_epoch", "honest", "honest"],
                                "y_true": [1, 1, 0, 2], "y_pred": [0, 1, 0, 2], "label_true": ["x", "x", "w", "v"]})
    index = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": ["x", "w", "v"], "aus": [["4"], ["12", "L1"], []]})
    table = report_annotations(extras, predictions, index)
    assert table["sample_id"].tolist() == ["b", "a"] and table["y_true"].tolist() == [0, 1]
    assert table["label"].tolist() == ["w", "x"] and table["aus"].tolist() == [["12", "L1"], ["4"]]
    assert table["au_codes"].isna().all()  # a column the index lacks is None
    assert len(report_annotations({"sample_ids": np.array([], dtype=str)}, predictions, index)) == 0


def _run(tmp_path: Path, inputs: dict[str, np.ndarray], index: pd.DataFrame, monkeypatch) -> tuple[pd.DataFrame, list]:
    seen: list[pd.DataFrame] = []

    def record(cls, extras, title, annotations):  # the toy task's figure: keeps what it was handed
        seen.append(annotations.assign(extras_id=np.asarray(extras["sample_ids"]).astype(str)))
        return cls.make_report_figures(extras, title)

    monkeypatch.setattr(MMNetTask, "make_annotated_report_figures", classmethod(record))
    pipeline = create_training_pipeline(MODEL).from_inputs(f"{MODEL}.model_input")
    SequentialRunner().run(pipeline, catalog_for(tmp_path, params(), inputs, index))
    return pd.read_pickle(tmp_path / "predictions.pkl"), seen


def test_figures_get_the_true_labels_of_exactly_their_test_samples_after_prediction(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    inputs = toy_inputs(16, n_classes=2, seed=3)
    index = toy_sample_index(inputs)
    predictions, seen = _run(tmp_path / "a", inputs, index, monkeypatch)
    (annotations,) = seen
    assert len(annotations) > 0 and (annotations["sample_id"] == annotations["extras_id"]).all()
    truth = index.set_index("sample_id")
    assert annotations["label"].tolist() == truth.loc[annotations["sample_id"], "label"].tolist()
    tested = predictions.set_index(["sample_id", "fold"])
    assert annotations["y_true"].tolist() == [int(tested.loc[(s, f), "y_true"].iloc[0])
                                              for s, f in zip(annotations["sample_id"], annotations["fold"])]
    # other annotations in the index change what the figure reads, never what the model predicted
    relabelled = index.assign(label=index["label"].iloc[::-1].to_numpy(), aus=[["99"]] * len(index))
    again, seen_again = _run(tmp_path / "b", inputs, relabelled, monkeypatch)
    pd.testing.assert_frame_equal(predictions, again)
    assert seen_again[0]["aus"].tolist() == [["99"]] * len(seen_again[0])
