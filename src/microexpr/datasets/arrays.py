"""Versioned ``dict[str, np.ndarray]`` <-> ``.npz`` (model inputs: frames, labels, subject ids)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io import DatasetError
from kedro.io.core import AbstractVersionedDataset, Version, get_filepath_str

from microexpr.datasets.feature_store import write_atomically


class NpzDataset(AbstractVersionedDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """Arrays by name in one ``.npz`` (uncompressed by default: model inputs are mostly JPEG-like uint8 frames
    that compress poorly and are read once per training shard). No pickled objects: strings are unicode arrays."""

    def __init__(
        self,
        *,
        filepath: str,
        compress: bool = False,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version, exists_function=lambda p: Path(p).exists())
        self._compress = compress
        self.metadata = metadata

    def load(self) -> dict[str, np.ndarray]:
        path = get_filepath_str(self._get_load_path(), "file")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read arrays from {path}: {exc}") from exc

    def save(self, data: dict[str, np.ndarray]) -> None:
        path = Path(get_filepath_str(self._get_save_path(), "file"))
        writer = np.savez_compressed if self._compress else np.savez
        write_atomically(path, lambda handle: writer(handle, **data))

    def _exists(self) -> bool:
        try:
            return Path(get_filepath_str(self._get_load_path(), "file")).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "compress": self._compress, "version": self._version}
