"""Provided face crops (``alignment: dataset_crops``) end to end on a CASME II fixture in its real layout.

The fixture holds ``CASME2_RAW_selected`` and ``Cropped`` side by side with different pixels, read through the
same I/O class and index builder as a real copy; face_alignment is a manifest in which dlib found no face anywhere
(the fixture frames are 16x16 patches), so every result below comes from the crops, never from dlib.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from torchvision import transforms

from microexpr.dag.ingest import content_hashes, frame_fingerprints
from microexpr.dag.preprocess import feature_config, plan_dependent_feature
from microexpr.data.index import build_sample_index
from microexpr.data.records import FrameFile, Snapshot
from microexpr.data.sources import casme2, get_source
from microexpr.datasets.feature_store import FeatureJobs, FeatureStore, FeatureTable
from microexpr.datasets.raw_source import read_snapshot
from microexpr.features import recipes
from microexpr.features.crops import locate_provided_crops
from tests.data import fixtures as fx

PROJECT = Path(__file__).resolve().parents[2]
LABELS = yaml.safe_load((PROJECT / "conf/base/labels.yml").read_text())
BASE = yaml.safe_load((PROJECT / "conf/base/parameters_preprocess.yml").read_text())["preprocess"]
SIZE = 24  # the 16x16 fixture crops are enlarged: every output pixel is an interpolated one
CROPS = {**BASE["key_frames"], "size": SIZE, "workers": 1, "alignment": "dataset_crops"}
DLIB = {**CROPS, "alignment": "dlib"}
SID = "casme2/sub01/EP02_01f"  # onset 8, apex 10, offset 12, frames 8..12


def indexed(root: Path, dataset: str = "casme2") -> tuple[Snapshot, pd.DataFrame]:
    """Snapshot and sample index (with ingest's content hashes) of a fixture root, as the ingest stage builds them."""
    snapshot = read_snapshot(get_source(dataset), root)
    index, _ = build_sample_index(snapshot, LABELS, "emotion5", None, {})
    return snapshot, index.assign(content_hash=content_hashes(index, frame_fingerprints(snapshot)))


def no_face_alignment(index: pd.DataFrame, blob_dir: Path) -> FeatureTable:
    """A face_alignment table in which dlib found no face on any clip (what the 16x16 fixture frames give)."""
    manifest = pd.DataFrame({
        "sample_id": index["sample_id"], "key": [f"align-{i}" for i in range(len(index))], "status": "excluded",
        "reason": [f"sample {s}: no face found on the onset frame" for s in index["sample_id"]],
        "seconds": 0.0, "reused": False,
    })
    return FeatureTable("face_alignment", manifest, str(blob_dir))


def plan(root: Path, params: dict, tmp: Path, feature: str = "key_frames") -> FeatureJobs:
    snapshot, index = indexed(root)
    return plan_dependent_feature(feature, index, no_face_alignment(index, tmp / "align"), params,
                                  locate_provided_crops(snapshot, index))


def run(jobs: FeatureJobs, store_dir: Path) -> FeatureTable:
    store = FeatureStore(filepath=str(store_dir / "manifest.parquet"))
    store.save(jobs)
    return store.load()


def resized_like_the_reference(path: Path) -> np.ndarray:
    """What muse1998/MMNet feeds its model: cv2.imread, BGR->RGB, ToPILImage, Resize((S, S)) (independent of ours)."""
    rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    return np.asarray(transforms.Resize((SIZE, SIZE))(transforms.ToPILImage()(rgb)))


def test_key_frames_are_the_resized_provided_crops(tmp_path: Path) -> None:
    root = fx.make_casme2(tmp_path / "raw", layout="raw+cropped").root
    table = run(plan(root, CROPS, tmp_path), tmp_path / "kf")
    assert sorted(table.ok_ids()) == ["casme2/sub01/EP02_01f", "casme2/sub02/EP02_01f", "casme2/sub02/EP06_02_01"]
    arrays = table.get(SID)
    assert arrays["onset_offsets"].tolist() == [0, 1, 2] and arrays["apex_offsets"].tolist() == [-2, -1, 0, 1, 2]
    clip = root / "Cropped/sub01/EP02_01f"
    for offset, face in zip(arrays["apex_offsets"], arrays["apex_frames"], strict=True):
        expected = resized_like_the_reference(clip / f"reg_img{10 + offset}.jpg")
        np.testing.assert_array_equal(face, expected)
        raw = resized_like_the_reference(root / f"CASME2_RAW_selected/sub01/EP02_01f/img{10 + offset}.jpg")
        assert np.abs(face.astype(int) - raw).max() > 20  # the crop, not the raw frame
    np.testing.assert_array_equal(arrays["onset_frames"][0], resized_like_the_reference(clip / "reg_img8.jpg"))


def test_missing_crop_file_excludes_the_clip_naming_it(tmp_path: Path) -> None:
    root = fx.make_casme2(tmp_path / "raw", layout="raw+cropped").root
    missing = root / "Cropped/sub01/EP02_01f/reg_img9.jpg"
    missing.unlink()
    table = run(plan(root, CROPS, tmp_path), tmp_path / "kf")
    reasons = table.exclusions().set_index("sample_id")["reason"]
    assert list(reasons.index) == [SID]
    assert SID in reasons[SID] and str(missing) in reasons[SID]
    assert len(table) == 2  # the other clips are computed from their crops

    # falling back to dlib only when asked: the clip then gets exactly the dlib job (here: dlib's own reason)
    fallback = {job.sample_id: job for job in plan(root, {**CROPS, "crop_missing": "dlib"}, tmp_path).jobs}
    dlib = {job.sample_id: job for job in plan(root, DLIB, tmp_path).jobs}
    assert fallback[SID].key == dlib[SID].key and fallback[SID].fn is recipes.excluded_upstream
    assert "no face found" in fallback[SID].kwargs["reason"]
    assert all(fallback[s].key != dlib[s].key for s in fallback if s != SID)


def test_corrupt_crop_file_excludes_the_clip_naming_it(tmp_path: Path) -> None:
    root = fx.make_casme2(tmp_path / "raw", layout="raw+cropped").root
    damaged = root / "Cropped/sub02/EP06_02_01/reg_img12.jpg"
    damaged.write_bytes(damaged.read_bytes()[:40])
    jobs = {job.sample_id: job for job in plan(root, CROPS, tmp_path).jobs}
    reason = jobs["casme2/sub02/EP06_02_01"].kwargs["reason"]
    assert "casme2/sub02/EP06_02_01" in reason and str(damaged) in reason and "truncated JPEG" in reason


def test_cache_key_follows_the_option_and_the_crop_files(tmp_path: Path) -> None:
    root = fx.make_casme2(tmp_path / "raw", layout="raw+cropped").root
    crops = {j.sample_id: j.key for j in plan(root, CROPS, tmp_path).jobs}
    dlib = {j.sample_id: j.key for j in plan(root, DLIB, tmp_path).jobs}
    assert set(crops) == set(dlib) and all(crops[s] != dlib[s] for s in crops)

    first = run(plan(root, CROPS, tmp_path), tmp_path / "kf")
    again = run(plan(root, CROPS, tmp_path), tmp_path / "kf")
    assert (~first.manifest["reused"]).sum() == 3 and again.manifest["reused"].all()  # unchanged: nothing computed

    replaced = root / "Cropped/sub02/EP02_01f/reg_img12.jpg"  # in the apex window of that clip
    image = cv2.imread(str(replaced))
    cv2.imwrite(str(replaced), cv2.resize(image, (20, 20)))
    changed = {j.sample_id: j.key for j in plan(root, CROPS, tmp_path).jobs}
    assert [s for s in crops if changed[s] != crops[s]] == ["casme2/sub02/EP02_01f"]
    third = run(plan(root, CROPS, tmp_path), tmp_path / "kf")
    assert third.manifest.set_index("sample_id")["reused"].to_dict() == {
        "casme2/sub01/EP02_01f": True, "casme2/sub02/EP02_01f": False, "casme2/sub02/EP06_02_01": True}


def test_dlib_keys_are_unchanged_by_the_option() -> None:
    """The default env's cache keys: the settings hashed under dlib are exactly the feature's other settings."""
    for feature in ("key_frames", "flow_onset_apex", "samer_inputs", "attr_clips", "mol_clips"):
        params = BASE[feature]
        hashed = feature_config(feature, params)
        assert hashed == {k: v for k, v in params.items() if k not in ("workers", "alignment")}
        with_crop_settings = {**params, "crops_dir": "Cropped", "crops_absent": "dlib", "crop_missing": "dlib"}
        assert feature_config(feature, with_crop_settings) == hashed
    assert not any(k.endswith("_fraction") for k in BASE["key_frames"])


def test_dataset_without_crops_is_an_error_naming_it(tmp_path: Path, caplog) -> None:
    root = fx.make_casme2(tmp_path / "raw", layout="raw").root
    with pytest.raises(ValueError, match=r"dataset 'casme2': no provided crops under .*Cropped"):
        plan(root, CROPS, tmp_path)
    with caplog.at_level(logging.WARNING):
        fallback = {j.sample_id: j.key for j in plan(root, {**CROPS, "crops_absent": "dlib"}, tmp_path).jobs}
    assert fallback == {j.sample_id: j.key for j in plan(root, DLIB, tmp_path).jobs}
    assert "3 clip(s) use the dlib alignment" in caplog.text

    samm = fx.make_samm(tmp_path / "samm").root
    snapshot = read_snapshot(get_source("samm"), samm)
    index, _ = build_sample_index(snapshot, LABELS, "emotion5", None, {})
    index = index.assign(content_hash="h")
    with pytest.raises(ValueError, match="no provided-crop layout is known for dataset 'samm'"):
        plan_dependent_feature("key_frames", index, no_face_alignment(index, tmp_path), CROPS,
                               locate_provided_crops(snapshot, index))


def test_crops_only_for_face_features_and_known_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mol_clips needs dlib landmarks"):
        feature_config("mol_clips", {**BASE["mol_clips"], "alignment": "dataset_crops"})
    with pytest.raises(ValueError, match="alignment='crops' is not one of dlib, dataset_crops"):
        feature_config("key_frames", {**CROPS, "alignment": "crops"})
    with pytest.raises(ValueError, match="crop_missing='skip'"):
        feature_config("key_frames", {**CROPS, "crop_missing": "skip"})


def test_other_face_features_read_the_crops(tmp_path: Path) -> None:
    root = fx.make_casme2(tmp_path / "raw", layout="raw+cropped").root
    params = {**BASE["flow_onset_apex"], "size": SIZE, "workers": 1, "alignment": "dataset_crops"}
    jobs = {j.sample_id: j for j in plan(root, params, tmp_path, "flow_onset_apex").jobs}
    assert jobs[SID].fn is recipes.with_provided_crops and set(jobs[SID].kwargs["paths"]) == {8, 10}
    flow = recipes.with_provided_crops(**jobs[SID].kwargs)["flow"]
    assert flow.shape == (SIZE, SIZE, 3) and np.isfinite(flow.astype(np.float32)).all()


def crop_snapshot(*folders: str) -> Snapshot:
    """A listing with one clip under each crop folder (and the raw frames), as the I/O layer returns it."""
    dirs = {"CASME2_RAW_selected/sub01/EP02_01f": [FrameFile("CASME2_RAW_selected/sub01/EP02_01f/img8.jpg", 1)]}
    for k, folder in enumerate(folders):
        for clip in ("EP02_01f", "EP03_02")[: k + 1]:
            dirs[f"{folder}/sub01/{clip}"] = [FrameFile(f"{folder}/sub01/{clip}/reg_img8.jpg", 1)]
    return Snapshot("casme2", "/data", dirs=dirs)


def test_crop_folders_are_found_by_name_and_ranked() -> None:
    assert casme2.provided_crop_dirs(crop_snapshot("Cropped_original", "Cropped-updated/Cropped")) == [
        "Cropped-updated/Cropped", "Cropped_original"]
    assert casme2.provided_crop_dirs(crop_snapshot("Cropped_v3", "Cropped")) == ["Cropped", "Cropped_v3"]
    assert casme2.provided_crop_dirs(crop_snapshot()) == []
    assert casme2.crop_clip_dir("Cropped", "CASME2_RAW_selected/sub01/EP02_01f") == "Cropped/sub01/EP02_01f"


def test_crops_dir_chooses_among_several_copies(tmp_path: Path) -> None:
    root = fx.make_casme2(tmp_path / "raw", layout="raw+cropped", crops_folder="Cropped-updated/Cropped").root
    fx.make_casme2(root, layout="cropped", crops_folder="Cropped_original")  # pixels of the raw frames
    default = {j.sample_id: j for j in plan(root, CROPS, tmp_path).jobs}
    assert default[SID].kwargs["paths"][8] == "Cropped-updated/Cropped/sub01/EP02_01f/reg_img8.jpg"
    chosen = {j.sample_id: j for j in plan(root, {**CROPS, "crops_dir": "Cropped_original"}, tmp_path).jobs}
    assert chosen[SID].kwargs["paths"][8] == "Cropped_original/sub01/EP02_01f/reg_img8.jpg"
    assert chosen[SID].key != default[SID].key
    with pytest.raises(ValueError, match="crops_dir 'Cropped' holds no crop folders.*Cropped_original"):
        plan(root, {**CROPS, "crops_dir": "Cropped"}, tmp_path)
