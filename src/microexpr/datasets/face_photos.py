"""Kedro dataset (read-only): a folder of face photographs for the synthetic set, or a fallback.

Which faces, in order: the configured folder (``synthetic_faces`` / ``MICROEXPR_FACES``) → the London set that
``microexpr faces download`` stored in the user cache folder (:func:`microexpr.faces.default_cache_dir`), when that
download is complete → matplotlib's ``grace_hopper.jpg`` and scikit-image's astronaut (both public domain;
subjects are then derived from only these two faces, which a WARNING says). A configured folder that does not
exist is an error: an explicitly configured path never falls back silently.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from kedro.io import AbstractDataset, DatasetError

from microexpr.data.synthetic import LONDON_ATTRIBUTION, FacePhotos
from microexpr.faces import cache_problem, default_cache_dir

logger = logging.getLogger(__name__)

PHOTO_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
_LONDON_NAME = re.compile(r"^london_\d+_\d+$")

FALLBACK_PROVENANCE = (
    "public-domain fallback faces shipped by installed packages: matplotlib sample data grace_hopper.jpg "
    "(US Navy photograph of Grace Hopper) and scikit-image data.astronaut() (NASA photograph of Eileen Collins)"
)


def read_photo(path: Path) -> np.ndarray:
    """Decode one photo as RGB uint8; raises DatasetError naming the file when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DatasetError(f"cannot decode face photo {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_photo_folder(folder: Path) -> FacePhotos:
    """Every JPEG/PNG directly in ``folder`` (sorted ids = file stems), with the London attribution if it is
    that set (file names ``london_<id>_<nn>``)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS)
    if not files:
        raise DatasetError(f"faces folder {folder} holds no JPEG or PNG photos")
    stems = [p.stem for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise DatasetError(f"faces folder {folder}: several files share the id(s) {duplicates}")
    images = {p.stem: read_photo(p) for p in files}
    is_london = all(_LONDON_NAME.match(s) for s in stems)
    return FacePhotos(
        images=dict(sorted(images.items())),
        provenance=f"{len(images)} photographs from {folder}"
        + (" (Face Research Lab London Set)" if is_london else ""),
        fallback=False,
        attribution=LONDON_ATTRIBUTION
        if is_london
        else (
            f"Face photographs from {folder}; check their licence before sharing frames derived from them."
        ),
    )


def fallback_photos() -> FacePhotos:
    """The two public-domain faces that ship with matplotlib and scikit-image."""
    import matplotlib.cbook
    import skimage.data

    hopper = read_photo(Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    astronaut = np.ascontiguousarray(skimage.data.astronaut()[..., :3]).astype(np.uint8)
    return FacePhotos(
        images={"astronaut": astronaut, "grace_hopper": hopper},
        provenance=FALLBACK_PROVENANCE,
        fallback=True,
        attribution="Fallback faces: public-domain photographs (US Navy; NASA) shipped with matplotlib and scikit-image.",
    )


def unconfigured_photos() -> FacePhotos:
    """No folder configured: the completed ``microexpr faces download`` cache, else the public-domain pair."""
    cache = default_cache_dir()
    problem = cache_problem(cache)
    if problem is None:
        photos = read_photo_folder(cache)
        logger.info(
            "No faces folder configured (synthetic_faces / MICROEXPR_FACES): using the %d downloaded London "
            "photographs in %s",
            len(photos.images),
            cache,
        )
        return photos
    if cache.exists():
        logger.warning(
            "Ignoring the faces cache %s: %s. Run `microexpr faces download` again.", cache, problem
        )
    logger.warning(
        "No faces folder configured (synthetic_faces / MICROEXPR_FACES) and no completed download in %s: using "
        "the 2 public-domain fallback faces; synthetic subjects are derived from only these faces, so identities "
        "leak across LOSO folds (smoke tests only). Run `microexpr faces download` (docs/datasets.md).",
        cache,
    )
    return fallback_photos()


class FacePhotoFolder(AbstractDataset[None, FacePhotos]):
    """Read-only Kedro dataset: ``load()`` returns :class:`FacePhotos` from ``path``, the download, or the fallback.

    Args:
        path: folder of face photographs (JPEG/PNG, one identity per file), e.g. the London set; None or ""
            selects the folder ``microexpr faces download`` filled when it is complete, else the public-domain
            fallback faces (resolved at load time, so the cache is found whenever it was downloaded).
    """

    def __init__(self, path: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._path = str(path).strip() if path is not None else ""
        self.metadata = metadata

    def load(self) -> FacePhotos:
        if not self._path:
            return unconfigured_photos()
        folder = Path(self._path).expanduser()
        if not folder.is_dir():
            raise DatasetError(
                f"configured faces folder {self._path!r} does not exist or is not a folder; fix synthetic_faces "
                "(or MICROEXPR_FACES), or unset it to use the downloaded faces or the public-domain fallback"
            )
        photos = read_photo_folder(folder)
        logger.info("Read %d face photographs from %s", len(photos.images), folder)
        return photos

    def save(self, data: FacePhotos) -> None:
        raise DatasetError("FacePhotoFolder is read-only")

    def _exists(self) -> bool:
        return not self._path or Path(self._path).expanduser().is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path or None}
