"""The ingest stage as Kedro runs it (in memory): a real-data ingest never reads the face photos, and a null
``label_set`` parameter becomes the dataset's default in the index."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner

import microexpr.dag.ingest as ingest
from microexpr.data.index import CORRECTION_COLUMNS
from microexpr.data.synthetic import FacePhotos, SyntheticSkipped
from microexpr.datasets.face_photo_loader import FacePhotoLoader
from microexpr.datasets.face_photos import FacePhotoFolder
from microexpr.datasets.raw_source import RawDatasetSource
from microexpr.datasets.synthetic_writer import SyntheticCasme2Dataset
from tests.data import fixtures as fx

PROJECT = Path(__file__).resolve().parents[2]
LABELS = yaml.safe_load((PROJECT / "conf/base/labels.yml").read_text())
TINY_FACES = FacePhotos(images={}, provenance="test double")


@pytest.fixture
def face_reads(monkeypatch) -> list[str | None]:
    """Every FacePhotoFolder.load() call (the one place photos are decoded), recorded instead of reading."""
    calls: list[str | None] = []

    def load(self: FacePhotoFolder) -> FacePhotos:
        calls.append(self._path)
        logging.getLogger("microexpr.datasets.face_photos").warning(
            "using the 2 public-domain fallback faces"
        )
        return TINY_FACES

    monkeypatch.setattr(FacePhotoFolder, "load", load)
    return calls


def run_ingest(tmp_path: Path, face_photos) -> dict:
    """The project's ingest pipeline on the CASME II fixture, label_set null, through SequentialRunner; returns
    the outputs (index, exclusions, summary)."""
    root = fx.make_casme2(tmp_path / "casme2").root
    catalog = DataCatalog(
        {
            "raw_dataset": RawDatasetSource(source="casme2", roots={"casme2": str(root)}),
            "face_photos": face_photos,
            "synthetic_raw": SyntheticCasme2Dataset(str(tmp_path / "synthetic")),
            "label_maps": MemoryDataset(LABELS),
            "annotation_corrections": MemoryDataset(pd.DataFrame(columns=list(CORRECTION_COLUMNS))),
            "params:dataset": MemoryDataset("casme2"),
            "params:synthetic": MemoryDataset({}),
            "params:ingest": MemoryDataset({}),
            **{name: Kept() for name in ("sample_index", "sample_exclusions", "ingest_summary")},
        }
    )
    catalog["params:label_set"] = None  # as `label_set: null` in conf/base/parameters.yml reaches the node
    SequentialRunner().run(ingest.create_ingest_pipeline(), catalog)
    return {name: catalog.load(name) for name in ("sample_index", "sample_exclusions", "ingest_summary")}


class Kept(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test reads the outputs after the run."""

    def _release(self) -> None:
        pass


def test_real_data_ingest_never_reads_the_face_photos(tmp_path, face_reads, caplog) -> None:
    with caplog.at_level(logging.INFO):
        outputs = run_ingest(tmp_path, FacePhotoLoader(None))
    assert face_reads == []
    assert not [r for r in caplog.records if "fallback" in r.getMessage()]
    index = outputs["sample_index"]
    assert len(index) == 3 and set(index["label_set"]) == {"emotion5"}  # null -> casme2's default
    assert outputs["ingest_summary"]["label_set"] == "emotion5"
    assert not (tmp_path / "synthetic").exists()


def test_an_eager_face_dataset_is_read_by_the_same_pipeline(tmp_path, face_reads, caplog) -> None:
    """Control for the test above: with FacePhotoFolder as the input Kedro reads it before the node runs."""
    with caplog.at_level(logging.WARNING):
        run_ingest(tmp_path, FacePhotoFolder(None))
    assert face_reads == [""]
    assert any("fallback" in r.getMessage() for r in caplog.records)


def test_synthetic_set_calls_the_loader_once(monkeypatch) -> None:
    seen: list[FacePhotos] = []

    def fake_generate(dataset, params, photos):
        seen.append(photos)
        yield SyntheticSkipped(reason="test")

    monkeypatch.setattr(ingest, "generate_synthetic_dataset", fake_generate)
    calls: list[int] = []

    def loader() -> FacePhotos:
        calls.append(1)
        return TINY_FACES

    assert len(list(ingest.write_synthetic_dataset("synthetic", {}, loader))) == 1
    assert calls == [1] and seen == [TINY_FACES]
    list(ingest.write_synthetic_dataset("samm", {}, loader))
    assert calls == [1] and seen[-1] is not TINY_FACES  # not read for another dataset
    list(ingest.write_synthetic_dataset("synthetic", {}, TINY_FACES))  # an already-read FacePhotos works too
    assert seen[-1] is TINY_FACES


def test_loader_reads_once_and_is_read_only(face_reads) -> None:
    dataset = FacePhotoLoader("some/folder")
    load = dataset.load()
    assert face_reads == []
    assert load() is load() is TINY_FACES
    assert face_reads == ["some/folder"]
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save(load)
