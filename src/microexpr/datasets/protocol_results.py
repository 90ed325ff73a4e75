"""The newest summary of one model's runs under each evaluation protocol: a folder of ``<key>.json`` files.

A run saves ``{key: summary}`` (its own summary, microexpr.evaluation.protocols); a file with the same key is
replaced, every other one is kept. Loading a folder that does not exist yet (no run saved one) gives ``{}``, so the
report of a model's first run simply has no other protocol to show. A file that is not valid JSON, or whose name
is not a plain key, is skipped with a warning naming it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from microexpr.datasets.feature_store import write_atomically

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_.=-]+$")


class ProtocolResultStore(AbstractDataset[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]):
    """Folder of ``<key>.json`` summaries (one per protocol, label set, dataset and settings); see module docstring."""

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, dict[str, Any]]:
        if not self._path.is_dir():
            return {}
        out: dict[str, dict[str, Any]] = {}
        for file in sorted(self._path.glob("*.json")):
            if not _KEY.match(file.stem):
                logger.warning("protocol results: ignoring %s (not a summary file name)", file)
                continue
            try:
                summary = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                logger.warning("protocol results: skipping unreadable %s (%s)", file, exc)
                continue
            if isinstance(summary, dict):
                out[file.stem] = summary
        return out

    def save(self, data: dict[str, dict[str, Any]]) -> None:
        for key, summary in data.items():
            if not _KEY.match(str(key)):
                raise DatasetError(f"protocol result key {key!r} is not a plain file name ([A-Za-z0-9_.=-])")
            payload = json.dumps(summary, indent=2, sort_keys=True, default=str).encode("utf-8")
            write_atomically(self._path / f"{key}.json", lambda handle, body=payload: handle.write(body))

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
