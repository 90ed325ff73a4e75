"""Fold-result store faults (issue 10 rows 2, 5, 10): damaged files heal, planted pickles never run."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from microexpr.datasets import FoldResultStore, NpzDataset
from microexpr.datasets.fold_results import read_fold_result
from microexpr.training.results import FoldResult, ShardDone


def _result(fold: str = "fold_0", key: str = "ab" * 16, score: float = 0.25) -> FoldResult:
    predictions = pd.DataFrame({"selection": ["honest", "honest"], "sample_id": ["s1", "s2"], "fold": [fold] * 2,
                                "epoch": [2, 2], "y_true": [0, 1], "y_pred": [0, 0], "score_a": [score, 0.5]})
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]})
    extras = {"sample_ids": np.array(["s1"]), "maps": np.ones((1, 2, 2), dtype=np.float16)}
    return FoldResult(model="m", fold=fold, shard=0, key=key, test_subjects=["synthetic/sub01"], n_train=6, n_test=2,
                      seed=7, history=history, predictions=predictions, extras=extras)


def test_round_trip_keeps_tables_and_extras(tmp_path: Path) -> None:
    store = FoldResultStore(path=str(tmp_path))
    original = _result()
    store.save(original)
    store.save(ShardDone(model="m", shard=0, folds={"fold_0": original.key}, reused=[]))
    loaded = store.load()[original.key]
    pd.testing.assert_frame_equal(loaded.predictions, original.predictions)
    pd.testing.assert_frame_equal(loaded.history, original.history)
    assert loaded.extras["sample_ids"].tolist() == ["s1"] and loaded.extras["maps"].dtype == np.float16
    assert (loaded.seed, loaded.test_subjects, loaded.reused) == (7, ["synthetic/sub01"], False)


def test_truncated_result_is_replaced_by_the_retrained_one(tmp_path: Path, caplog) -> None:
    """Row 2: the unreadable file is skipped on load (so the fold retrains) and overwritten on save."""
    store = FoldResultStore(path=str(tmp_path))
    store.save(_result(score=0.25))
    (target,) = tmp_path.glob("fold_0__*.npz")
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        assert store.load() == {}
    assert str(target) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        store.save(_result(score=0.75))
    assert "Replacing unreadable" in caplog.text and str(target) in caplog.text
    assert read_fold_result(target).predictions["score_a"].iloc[0] == 0.75


def test_readable_result_with_the_same_key_is_kept(tmp_path: Path) -> None:
    store = FoldResultStore(path=str(tmp_path))
    store.save(_result(score=0.25))
    store.save(_result(score=0.75))
    assert store.load()["ab" * 16].predictions["score_a"].iloc[0] == 0.25


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["PLANTED_MARKER"]),))


def test_planted_pickle_is_ignored_and_never_run(tmp_path: Path, monkeypatch, caplog) -> None:
    """Row 5: a pickle named like a fold result (either suffix) is never unpickled; a warning names it."""
    marker = tmp_path / "payload_ran"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    folder = tmp_path / "shard_0"
    folder.mkdir()
    for name in ("fold_999__deadbeef.pkl", "fold_998__deadbeef.npz"):
        (folder / name).write_bytes(pickle.dumps(_Payload()))
    (folder / "notes.txt").write_text("hello")
    with caplog.at_level(logging.WARNING):
        assert FoldResultStore(path=str(folder)).load() == {}
    assert not marker.exists()
    assert "fold_999__deadbeef.pkl" in caplog.text and "fold_998__deadbeef.npz" in caplog.text
    assert "notes.txt" in caplog.text


def test_npz_with_a_pickled_member_is_refused(tmp_path: Path, monkeypatch) -> None:
    """An .npz whose member is an object array would need unpickling: refused, payload not run."""
    marker = tmp_path / "payload_ran"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    target = tmp_path / "fold_0__deadbeef.npz"
    with target.open("wb") as handle:
        np.savez(handle, **{"meta.json": np.array([_Payload()], dtype=object)})
    assert FoldResultStore(path=str(tmp_path)).load() == {}
    assert not marker.exists()


def test_report_extras_dataset_refuses_pickles(tmp_path: Path, monkeypatch) -> None:
    """The attention examples (report_extras) are stored as .npz and read with allow_pickle=False."""
    marker = tmp_path / "payload_ran"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    dataset = NpzDataset(filepath=str(tmp_path / "extras.npz"))
    dataset.save({"sample_ids": np.array(["a"]), "maps": np.zeros((1, 2, 2), dtype=np.float16)})
    assert dataset.load()["sample_ids"].tolist() == ["a"]
    with (tmp_path / "extras.npz").open("wb") as handle:
        np.savez(handle, maps=np.array([_Payload()], dtype=object))
    with pytest.raises(Exception, match="cannot read arrays"):
        dataset.load()
    assert not marker.exists()


def test_files_respect_the_umask(tmp_path: Path) -> None:
    """Row 10: written with 0666 less the umask (group-readable under 022/002), not mkstemp's 0600."""
    previous = os.umask(0o002)
    try:
        store = FoldResultStore(path=str(tmp_path))
        store.save(_result())
        store.save(ShardDone(model="m", shard=0, folds={}, reused=[]))
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert set(modes.values()) == {0o664}, modes
