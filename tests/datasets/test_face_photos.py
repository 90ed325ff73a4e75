"""FacePhotoFolder: configured folder, public-domain fallback, and clear errors."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from kedro.io import DatasetError

from microexpr.data.synthetic import FacePhotos
from microexpr.datasets.face_photos import FacePhotoFolder
from microexpr.faces import CACHE_ENV


@pytest.fixture(autouse=True)
def no_downloaded_faces(tmp_path, monkeypatch):
    """A user's real `microexpr faces download` cache must not change what these tests see."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "no_faces_cache"))


@pytest.mark.parametrize("path", [None, "", "  "])
def test_unset_path_falls_back_to_public_domain_faces(path, caplog):
    with caplog.at_level(logging.WARNING, logger="microexpr.datasets.face_photos"):
        photos = FacePhotoFolder(path).load()
    assert photos.fallback
    assert sorted(photos.images) == ["astronaut", "grace_hopper"]
    for image in photos.images.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert "public domain" in photos.provenance.lower() or "public-domain" in photos.provenance.lower()
    assert any("fallback" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert any("microexpr faces download" in r.getMessage() for r in caplog.records)


def test_a_folder_without_the_download_manifest_is_not_taken_for_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    cv2.imwrite(str(cache / "london_001_03.jpg"), np.full((8, 8, 3), 128, np.uint8))
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert FacePhotoFolder(None).load().fallback


def test_configured_missing_folder_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "no_such_faces"
    with pytest.raises(DatasetError, match="no_such_faces.*does not exist"):
        FacePhotoFolder(str(missing)).load()


def test_folder_photos_are_rgb_with_sorted_ids(tmp_path):
    red_bgr = np.zeros((8, 8, 3), np.uint8)
    red_bgr[..., 2] = 255
    cv2.imwrite(str(tmp_path / "b_face.png"), red_bgr)
    cv2.imwrite(str(tmp_path / "a_face.jpg"), red_bgr)
    (tmp_path / "notes.txt").write_text("not a photo")
    photos = FacePhotoFolder(str(tmp_path)).load()
    assert not photos.fallback
    assert list(photos.images) == ["a_face", "b_face"]
    png = photos.images["b_face"]
    assert png[0, 0, 0] == 255 and png[0, 0, 2] == 0  # RGB order
    assert "DeBruine" not in (photos.attribution or "")


def test_london_file_names_carry_the_attribution(tmp_path):
    cv2.imwrite(str(tmp_path / "london_001_03.jpg"), np.full((8, 8, 3), 128, np.uint8))
    photos = FacePhotoFolder(str(tmp_path)).load()
    assert "DeBruine" in photos.attribution and "CC BY 4.0" in photos.attribution


def test_empty_folder_and_corrupt_photo_raise_naming_the_file(tmp_path):
    with pytest.raises(DatasetError, match="no JPEG or PNG"):
        FacePhotoFolder(str(tmp_path)).load()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        FacePhotoFolder(str(tmp_path)).load()


def test_read_only(tmp_path):
    with pytest.raises(DatasetError, match="read-only"):
        FacePhotoFolder(str(tmp_path)).save(FacePhotos(images={}, provenance="test"))
