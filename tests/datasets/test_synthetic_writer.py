"""SyntheticCasme2Dataset: CASME II layout, reuse by key, marker-file safety, stale-clip removal, xlsx format."""

from __future__ import annotations

import json

import numpy as np
import openpyxl
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from microexpr.data import synthetic as syn
from microexpr.datasets.face_photos import FacePhotoFolder, fallback_photos
from microexpr.datasets.raw_source import RawDatasetSource
from microexpr.datasets.synthetic_writer import MARKER_FILE, SyntheticCasme2Dataset, write_annotation_xlsx

SMALL = {
    "n_subjects": 2,
    "clips_per_subject": [2, 2],
    "canvas_size": 160,
    "lead_in_frames": [2, 3],
    "tail_frames": [2, 2],
    "onset_to_apex_ms": [40, 50],
    "apex_to_offset_ms": [80, 90],
}


class CountingRender:
    """A render() stand-in that returns tiny frames and counts its calls."""

    def __init__(self, n_frames: int, value: int = 100) -> None:
        self.calls = 0
        self.n_frames = n_frames
        self.value = value

    def __call__(self) -> list[np.ndarray]:
        self.calls += 1
        return [np.full((8, 8, 3), self.value, np.uint8) for _ in range(self.n_frames)]


def fake_clip(subject: str, clip: str, key: str, index: int = 0, total: int = 1, first: int = 46):
    frames = (first, first + 1, first + 2)
    render = CountingRender(len(frames))
    row = dict(
        zip(
            syn.CASME2_COLUMNS, (int(subject[3:]), clip, None, first, first + 1, first + 2, None, 4, "others")
        )
    )
    chunk = syn.ClipRender(subject, clip, index, total, frames, row, key, 90, render)
    return chunk, render


def fake_manifest(chunks: list[syn.ClipRender]) -> syn.SyntheticManifest:
    frame = pd.DataFrame([c.annotation for c in chunks], columns=list(syn.CASME2_COLUMNS))
    return syn.SyntheticManifest(
        annotation=frame,
        params={},
        generator_version=syn.GENERATOR_VERSION,
        fallback=False,
        face_provenance="test",
        attribution=None,
        subjects={c.subject: "face" for c in chunks},
        clips=[{"subject": c.subject, "clip": c.clip, "key": c.key, "n_frames": 3} for c in chunks],
        counts_per_class={"others": len(chunks)},
        counts_per_subject={},
        n_frames=3 * len(chunks),
        readme="# test\n",
    )


def test_skipped_chunk_writes_nothing(tmp_path):
    root = tmp_path / "synthetic"
    SyntheticCasme2Dataset(str(root)).save(syn.SyntheticSkipped("dataset is casme2"))
    assert not root.exists()


def test_clip_written_in_casme2_layout_and_reused_by_key(tmp_path):
    writer = SyntheticCasme2Dataset(str(tmp_path / "synthetic"))
    chunk, render = fake_clip("sub01", "EP02_01f", "key-1")
    writer.save(chunk)
    folder = tmp_path / "synthetic" / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    assert sorted(p.name for p in folder.glob("*.jpg")) == ["img46.jpg", "img47.jpg", "img48.jpg"]
    assert (folder / ".key").read_text().strip() == "key-1"
    assert (tmp_path / "synthetic" / MARKER_FILE).is_file()
    mtime = (folder / "img46.jpg").stat().st_mtime_ns

    again, render_again = fake_clip("sub01", "EP02_01f", "key-1")
    writer.save(again)
    assert render.calls == 1 and render_again.calls == 0
    assert (folder / "img46.jpg").stat().st_mtime_ns == mtime

    changed, render_changed = fake_clip("sub01", "EP02_01f", "key-2", first=10)
    writer.save(changed)
    assert render_changed.calls == 1
    assert sorted(p.name for p in folder.glob("*.jpg")) == ["img10.jpg", "img11.jpg", "img12.jpg"]


def test_refuses_a_non_empty_folder_without_marker(tmp_path):
    real = tmp_path / "CASME2"
    (real / "CASME2_RAW_selected" / "sub01" / "EP02_01f").mkdir(parents=True)
    sheet = real / "CASME2-coding-20140508.xlsx"
    sheet.write_bytes(b"user data")
    chunk, render = fake_clip("sub01", "EP02_01f", "k")
    with pytest.raises(DatasetError, match=r"refusing to write.*CASME2.*marker"):
        SyntheticCasme2Dataset(str(real)).save(chunk)
    with pytest.raises(DatasetError, match="refusing to write"):
        SyntheticCasme2Dataset(str(real)).save(fake_manifest([chunk]))
    assert render.calls == 0 and sheet.read_bytes() == b"user data"
    assert not (real / MARKER_FILE).exists()


def test_manifest_removes_stale_clips_only(tmp_path):
    root = tmp_path / "synthetic"
    writer = SyntheticCasme2Dataset(str(root))
    keep, _ = fake_clip("sub01", "EP01_01", "a", 0, 2)
    stale, _ = fake_clip("sub02", "EP03_02", "b", 1, 2)
    for chunk in (keep, stale):
        writer.save(chunk)
    writer.save(fake_manifest([keep, stale]))
    other = root / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("not a clip")

    keep_again, render = fake_clip("sub01", "EP01_01", "a", 0, 1)
    writer.save(keep_again)
    assert not (root / "manifest.json").exists()  # a new generation is incomplete until its manifest
    writer.save(fake_manifest([keep_again]))
    assert render.calls == 0
    assert (root / "CASME2_RAW_selected" / "sub01" / "EP01_01" / "img46.jpg").is_file()
    assert not (root / "CASME2_RAW_selected" / "sub02").exists()
    assert (other / "mine.txt").is_file()
    manifest = writer.load()
    assert manifest["generated"] and manifest["n_clips"] == 1


def test_manifest_before_its_clips_is_an_error(tmp_path):
    chunk, _ = fake_clip("sub01", "EP01_01", "a")
    with pytest.raises(DatasetError, match="sub01/EP01_01"):
        SyntheticCasme2Dataset(str(tmp_path / "synthetic")).save(fake_manifest([chunk]))


def test_load_without_manifest(tmp_path):
    assert SyntheticCasme2Dataset(str(tmp_path / "nothing")).load()["generated"] is False


def test_xlsx_round_trip_keeps_casme2_layout_and_types(tmp_path):
    plan = syn.plan_dataset({}, [f"f{i}" for i in range(20)], fallback=False)
    frame = plan.annotation_frame()
    path = tmp_path / "CASME2-coding-20140508.xlsx"
    write_annotation_xlsx(frame, path)
    header = [c.value for c in next(openpyxl.load_workbook(path).active.iter_rows(max_row=1))]
    assert header == [
        "Subject",
        "Filename",
        None,
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        None,
        "Action Units",
        "Estimated Emotion",
    ]
    back = pd.read_excel(path)
    assert tuple(back.columns) == syn.CASME2_COLUMNS
    for col in ("Subject", "OnsetFrame", "OffsetFrame"):
        assert back[col].dtype == np.int64, col
    assert back["ApexFrame"].dtype == object and (back["ApexFrame"] == "/").sum() == 1
    au_types = {type(v) for v in back["Action Units"]}
    assert au_types == {int, str}
    assert back["Unnamed: 2"].isna().all() and back["Unnamed: 6"].isna().all()
    assert back["Filename"].tolist() == frame["Filename"].tolist()


def test_generated_set_is_read_back_by_the_raw_reader_and_reused(tmp_path):
    root = tmp_path / "synthetic"
    photos = fallback_photos()
    writer = SyntheticCasme2Dataset(str(root))
    for chunk in syn.generate_synthetic_dataset("synthetic", SMALL, photos):
        writer.save(chunk)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["fallback"] and manifest["n_clips"] == 4
    readme = (root / "README.md").read_text()
    assert "Fallback faces" in readme and syn.GENERATOR_VERSION in readme

    snapshot = RawDatasetSource(source="synthetic", roots={"synthetic": str(root)}).load()
    assert list(snapshot.tables) == ["CASME2-coding-20140508.xlsx"]
    sheet = snapshot.tables["CASME2-coding-20140508.xlsx"]
    assert sheet.shape == (5, 9)
    for clip in manifest["clips"]:
        files = snapshot.dirs[f"CASME2_RAW_selected/{clip['subject']}/{clip['clip']}"]
        assert len(files) == clip["n_frames"] and all(f.problem is None for f in files)

    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.jpg")}
    chunks = list(syn.generate_synthetic_dataset("synthetic", SMALL, photos))
    for chunk in chunks:
        if isinstance(chunk, syn.ClipRender):
            object.__setattr__(chunk, "render", CountingRender(0))
        writer.save(chunk)
    assert all(c.render.calls == 0 for c in chunks if isinstance(c, syn.ClipRender))
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.jpg")} == mtimes


def test_kedro_streams_generator_chunks_into_the_writer(tmp_path):
    """The node is a generator: Kedro saves each yielded chunk with the writer (in-memory SequentialRunner)."""
    root = tmp_path / "synthetic"
    catalog = DataCatalog(
        {
            "params:dataset": MemoryDataset("synthetic"),
            "params:synthetic": MemoryDataset({**SMALL, "n_subjects": 1}),
            "synthetic_faces": FacePhotoFolder(None),
            "synthetic_raw": SyntheticCasme2Dataset(str(root)),
        }
    )
    node = Node(
        syn.generate_synthetic_dataset,
        inputs=["params:dataset", "params:synthetic", "synthetic_faces"],
        outputs="synthetic_raw",
        name="generate_synthetic_dataset",
    )
    SequentialRunner().run(Pipeline([node]), catalog)
    manifest = catalog.load("synthetic_raw")
    assert manifest["generated"] and manifest["n_clips"] == 2
    assert len(list((root / "CASME2_RAW_selected" / "sub01").iterdir())) == 2
    assert (root / "CASME2-coding-20140508.xlsx").is_file()


def test_clip_with_a_deleted_frame_is_rendered_again(tmp_path):
    writer = SyntheticCasme2Dataset(str(tmp_path / "synthetic"))
    chunk, _ = fake_clip("sub01", "EP02_01f", "key-1")
    writer.save(chunk)
    (tmp_path / "synthetic" / chunk.relpath / "img47.jpg").unlink()
    again, render = fake_clip("sub01", "EP02_01f", "key-1")
    writer.save(again)
    assert render.calls == 1 and (tmp_path / "synthetic" / chunk.relpath / "img47.jpg").is_file()
