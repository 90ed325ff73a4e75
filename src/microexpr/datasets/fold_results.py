"""Per-fold training results of one shard, written as each fold finishes (a killed run loses one fold at most)."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from microexpr.datasets.feature_store import write_atomically
from microexpr.training.results import FoldResult, ShardDone

logger = logging.getLogger(__name__)


class FoldResultStore(AbstractDataset[FoldResult | ShardDone, dict[str, FoldResult]]):
    """Folder of ``<fold>__<key>.pkl`` files (our own pickles, never third-party input) plus a shard summary.

    ``save`` takes the chunks a training shard streams: a :class:`FoldResult` is written at once (atomically;
    an existing file with the same key is kept), a :class:`ShardDone` writes ``shard_summary.json``. ``load``
    returns every stored result by key; the training node reuses those whose key matches the fold it would
    train, and the aggregation picks exactly the keys of the current folds, so stale results are never mixed in.
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, FoldResult]:
        results: dict[str, FoldResult] = {}
        if not self._path.is_dir():
            return results
        for file in sorted(self._path.glob("*__*.pkl")):
            try:
                with file.open("rb") as handle:
                    result = pickle.load(handle)
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
                logger.warning("Ignoring unreadable fold result %s (%s); that fold will be trained again", file, exc)
                continue
            results[result.key] = result
        return results

    def save(self, data: FoldResult | ShardDone) -> None:
        if isinstance(data, FoldResult):
            target = self._path / f"{data.fold}__{data.key}.pkl"
            if not target.exists():
                stored = FoldResult(**{**data.__dict__, "reused": False})
                write_atomically(target, lambda handle: pickle.dump(stored, handle, protocol=pickle.HIGHEST_PROTOCOL))
        elif isinstance(data, ShardDone):
            payload = json.dumps(data.__dict__, indent=2).encode()
            write_atomically(self._path / "shard_summary.json", lambda handle: handle.write(payload))
        else:
            raise DatasetError(f"FoldResultStore saves FoldResult or ShardDone chunks, got {type(data).__name__}")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
