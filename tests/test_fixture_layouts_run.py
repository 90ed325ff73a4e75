"""`kedro run --pipelines=ingest,preprocess,split` on every fixture layout (real formats, tiny frames, no faces).

The fixture frames are 16x16 patches without faces, so preprocessing must record every clip as an exclusion
naming its onset frame (never crash), and the split stage still produces leakage-free folds from the index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.data import fixtures
from tests.test_kedro_runs import kedro, latest

pytestmark = pytest.mark.slow

LAYOUTS = {
    # dataset: (builder, label set, protocol)
    "casme2": (lambda root: {"casme2": fixtures.make_casme2(root / "casme2").root}, "emotion5", "loso"),
    "samm": (lambda root: {"samm": fixtures.make_samm(root / "samm").root}, "emotion5", "loso"),
    "smic_hs": (lambda root: {"smic_hs": fixtures.make_smic(root / "smic_hs").root}, "megc3", "loso"),
    "mmew": (lambda root: {"mmew": fixtures.make_mmew(root / "mmew").root}, "mmew4", "loso"),
    # the CAS(ME)^3 fixture keeps one subject only: LOSO must refuse it with a clear error (checked below)
    "casme3_a": (lambda root: {"casme3_a": fixtures.make_casme3(root / "casme3_a").root}, "casme3_7", "loso"),
    "megc2019": (lambda root: fixtures.make_megc2019(root / "raw")[0], "megc3", "megc2019"),
}


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_ingest_preprocess_split_on_fixture_layout(tmp_path: Path, dataset: str) -> None:
    build, label_set, protocol = LAYOUTS[dataset]
    roots = {name: str(path) for name, path in build(tmp_path / "raw").items()}
    params = [f"dataset={dataset}", f"label_set={label_set}", f"split.protocol={protocol}"]
    params += [f"raw_roots.{name}={path}" for name, path in roots.items()]
    kedro(["run", "--pipelines=ingest,preprocess", "--params", ",".join(params)], tmp_path / "data")

    data = tmp_path / "data"
    index = pd.read_parquet(latest(data, "03_primary/sample_index.parquet"))
    exclusions = pd.read_csv(latest(data, "03_primary/sample_exclusions.csv"), dtype=str)
    assert len(index) > 0 and set(index["label_set"]) == {label_set}
    assert not set(index["sample_id"]) & set(exclusions["dataset"] + "/" + exclusions["subject"] + "/" + exclusions["clip"])

    features = pd.read_csv(latest(data, "04_feature/preprocess_exclusions.csv"))
    alignment = features[features["feature"] == "face_alignment"]
    assert sorted(alignment["sample_id"]) == sorted(index["sample_id"])  # no face anywhere: all recorded
    assert alignment["reason"].str.contains("no face found on the onset frame").all()
    assert all(sid in reason for sid, reason in zip(alignment["sample_id"], alignment["reason"], strict=True))
    summary = json.loads(latest(data, "04_feature/preprocess_summary.json").read_text())
    assert all(entry["ok"] == 0 and entry["excluded"] == len(index) for entry in summary.values())

    if index["fold_subject"].nunique() < 2:
        with pytest.raises(AssertionError, match="needs at least 2 fold subjects"):
            kedro(["run", "--pipelines=split", "--params", ",".join(params)], data)
        return
    kedro(["run", "--pipelines=split", "--params", ",".join(params)], data)
    folds = pd.read_parquet(latest(data, "05_model_input/folds.parquet"))
    assert folds["n_test"].sum() == len(index)  # every sample tested exactly once
    for row in folds.itertuples():
        assert not set(row.test_subjects) & set(row.train_subjects)
