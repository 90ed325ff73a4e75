"""Feature-store faults (issue 10 rows 3 and 10): a damaged blob is recomputed, read errors name file and sample."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError

from microexpr.datasets.feature_store import FeatureJob, FeatureJobs, FeatureStore, FeatureTable, blob_path

CALLS = {"n": 0}


def _feature(value: int) -> dict[str, np.ndarray]:
    CALLS["n"] += 1
    return {"x": np.full((64, 64), value, dtype=np.int32)}


def _jobs() -> FeatureJobs:
    return FeatureJobs("toy", [FeatureJob(f"s{i}", f"{i:02d}" + "a" * 30, _feature, {"value": i}) for i in range(3)])


def _store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(filepath=str(tmp_path / "toy" / "manifest.parquet"))


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "bit_flip"])
def test_damaged_blob_is_recomputed_with_a_warning(tmp_path: Path, caplog, damage: str) -> None:
    store = _store(tmp_path)
    store.save(_jobs())
    blob = blob_path(tmp_path / "toy" / "blobs", "01" + "a" * 30)
    if damage == "truncate":
        blob.write_bytes(blob.read_bytes()[:-100])
    else:
        _flip_a_bit(blob)
    CALLS["n"] = 0
    with caplog.at_level(logging.WARNING):
        store.save(_jobs())
    assert CALLS["n"] == 1, "exactly the damaged clip is recomputed"
    assert str(blob) in caplog.text and "s1" in caplog.text
    table = store.load()
    assert table.get("s1")["x"][0, 0] == 1
    assert table.manifest.set_index("sample_id").loc["s1", "reused"] == False  # noqa: E712


def test_read_error_names_the_file_and_the_sample(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_jobs())
    table: FeatureTable = store.load()
    blob = blob_path(tmp_path / "toy" / "blobs", "02" + "a" * 30)
    blob.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError) as info:
        table.get("s2")
    assert str(blob) in str(info.value) and "'s2'" in str(info.value)


def test_damaged_exclusion_record_is_recomputed(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_jobs())
    blob = blob_path(tmp_path / "toy" / "blobs", "00" + "a" * 30)
    blob.unlink()
    blob.with_name(blob.name.replace(".npz", ".excluded.json")).write_text("{not json")
    CALLS["n"] = 0
    store.save(_jobs())
    assert CALLS["n"] == 1 and store.load().get("s0")["x"][0, 0] == 0


def test_blobs_and_manifest_respect_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        _store(tmp_path).save(_jobs())
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "toy").rglob("*") if p.is_file()]
    assert len(files) == 4
    assert {p.stat().st_mode & 0o777 for p in files} == {0o644}
