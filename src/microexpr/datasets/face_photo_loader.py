"""Kedro dataset (read-only): the face photographs as a loader that reads them only when first called.

The ingest pipeline's synthetic-writer node needs the photos only when ``dataset`` is ``synthetic``. Kedro loads
every input of a node before calling it, so with :class:`~microexpr.datasets.face_photos.FacePhotoFolder` as the
input a CASME II / SAMM / ... ingest would decode the photos (and log the fallback-faces WARNING) for nothing.
``load()`` here returns a zero-argument function instead; the first call reads through ``FacePhotoFolder`` (same
``path`` semantics, same errors and warnings) and later calls return the same object.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from microexpr.data.synthetic import FacePhotos
from microexpr.datasets.face_photos import FacePhotoFolder


class FacePhotoLoader(AbstractDataset[None, Callable[[], FacePhotos]]):
    """Read-only Kedro dataset: ``load()`` returns a cached function that reads the photos on its first call.

    Args:
        path: as for ``FacePhotoFolder``: a folder of face photographs; None or "" selects its fallbacks.
    """

    def __init__(self, path: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._path = path
        self._folder = FacePhotoFolder(path)
        self.metadata = metadata

    def load(self) -> Callable[[], FacePhotos]:
        return functools.cache(self._folder.load)

    def save(self, data: Callable[[], FacePhotos]) -> None:
        raise DatasetError("FacePhotoLoader is read-only")

    def _exists(self) -> bool:
        return self._folder.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path or None, "deferred": True}
