"""Per-fold training results of one shard, written as each fold finishes (a killed run loses one fold at most).

Format (no pickles: loading never executes code, so a file planted in a shared shard folder can do no harm):
one ``<fold>__<key>.npz`` per fold, read with ``allow_pickle=False``, holding

* ``meta.json``: the fold's scalars and lists (model, fold, shard, key, test subjects, counts, seed, device, ...)
  as UTF-8 JSON bytes;
* ``history.parquet`` and ``predictions.parquet``: the two tables as parquet bytes;
* ``extras.<name>``: the task's report extras (plain numeric or unicode arrays).

A file that cannot be read (truncated, bit-flipped, a different format) is skipped with a warning naming it, so
that fold is trained again, and the retrained result replaces it (atomic write). Anything else in the folder (an
old ``.pkl``, a stray file) is ignored with a warning and never opened.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from microexpr.datasets.feature_store import write_atomically
from microexpr.training.results import FoldResult, ShardDone

logger = logging.getLogger(__name__)

FORMAT = 1
SUMMARY = "shard_summary.json"
_NAME = re.compile(r"^(?P<fold>[A-Za-z0-9_.-]+)__(?P<key>[0-9a-f]{8,64})\.npz$")
_NOT_META = frozenset({"history", "predictions", "extras", "reused"})
_EXTRA = "extras."


def _meta_fields() -> list[dataclasses.Field]:
    """Every FoldResult field stored in ``meta.json`` (all but the tables, the extras and ``reused``); a field
    added to FoldResult later is stored too, as long as it is JSON-serialisable."""
    return [f for f in dataclasses.fields(FoldResult) if f.name not in _NOT_META]


class UnreadableFoldResult(ValueError):
    """A fold-result file is damaged or not in the store's format (the message names the file)."""


def _bytes_array(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, dtype=np.uint8)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _plain_array(name: str, value: Any) -> np.ndarray:
    """An extra as an array numpy can store without pickling (object arrays of strings become unicode)."""
    array = np.asarray(value)
    if array.dtype == object:
        if all(isinstance(v, str) for v in array.ravel()):
            return array.astype(str)
        raise DatasetError(f"report extra {name!r} holds Python objects; store numbers or strings only")
    return array


def encode(result: FoldResult) -> dict[str, np.ndarray]:
    """A fold result as named arrays for one ``.npz`` (see the module docstring)."""
    meta = {f.name: getattr(result, f.name) for f in _meta_fields()}
    meta["format"] = FORMAT
    arrays = {
        "meta.json": _bytes_array(json.dumps(meta, default=str).encode()),
        "history.parquet": _bytes_array(_parquet_bytes(result.history)),
        "predictions.parquet": _bytes_array(_parquet_bytes(result.predictions)),
    }
    for name, value in (result.extras or {}).items():
        arrays[_EXTRA + str(name)] = _plain_array(str(name), value)
    return arrays


def read_fold_result(path: Path) -> FoldResult:
    """Read one stored fold result without executing anything; raises UnreadableFoldResult naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(arrays["meta.json"].tobytes().decode())
        history = pd.read_parquet(io.BytesIO(arrays["history.parquet"].tobytes()))
        predictions = pd.read_parquet(io.BytesIO(arrays["predictions.parquet"].tobytes()))
    except Exception as exc:  # noqa: BLE001 - zip, npy, JSON and pyarrow each raise their own types on damage
        raise UnreadableFoldResult(f"fold result {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    required = [f.name for f in _meta_fields()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if meta.get("format") != FORMAT or any(name not in meta for name in required):
        raise UnreadableFoldResult(f"fold result {path} is not in format {FORMAT} (fields {sorted(meta)})")
    extras = {name[len(_EXTRA):]: value for name, value in arrays.items() if name.startswith(_EXTRA)}
    fields = {f.name: meta[f.name] for f in _meta_fields() if f.name in meta}
    return FoldResult(**fields, history=history, predictions=predictions, extras=extras, reused=False)


class FoldResultStore(AbstractDataset[FoldResult | ShardDone, dict[str, FoldResult]]):
    """Folder of ``<fold>__<key>.npz`` files (format in the module docstring) plus a shard summary.

    ``save`` takes the chunks a training shard streams: a :class:`FoldResult` is written at once (atomically; an
    existing readable file with the same key is kept, an unreadable one replaced with a warning), a
    :class:`ShardDone` writes ``shard_summary.json``. ``load`` returns every readable result by key; the training
    node reuses those whose key matches the fold it would train, and the aggregation picks exactly the keys of the
    current folds, so stale results are never mixed in.
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, FoldResult]:
        results: dict[str, FoldResult] = {}
        if not self._path.is_dir():
            return results
        for file in sorted(self._path.iterdir()):
            if file.name == SUMMARY or file.name.startswith(".tmp-"):
                continue
            match = _NAME.match(file.name)
            if match is None or not file.is_file():
                logger.warning("Ignoring %s: not a fold result of this store (expected <fold>__<key>.npz; "
                               "pickles are never loaded)", file)
                continue
            try:
                result = read_fold_result(file)
            except UnreadableFoldResult as exc:
                logger.warning("Ignoring unreadable %s; that fold will be trained again and the file replaced", exc)
                continue
            if (result.key, result.fold) != (match["key"], match["fold"]):
                logger.warning("Ignoring %s: its content names fold %s key %s, not its file name", file,
                               result.fold, result.key)
                continue
            results[result.key] = result
        return results

    def save(self, data: FoldResult | ShardDone) -> None:
        if isinstance(data, FoldResult):
            target = self._path / f"{data.fold}__{data.key}.npz"
            if target.exists():
                try:
                    if read_fold_result(target).key == data.key:
                        return
                except UnreadableFoldResult as exc:
                    logger.warning("Replacing unreadable %s with the retrained result", exc)
            arrays = encode(data)
            write_atomically(target, lambda handle: np.savez(handle, **arrays))
        elif isinstance(data, ShardDone):
            payload = json.dumps(data.__dict__, indent=2).encode()
            write_atomically(self._path / SUMMARY, lambda handle: handle.write(payload))
        else:
            raise DatasetError(f"FoldResultStore saves FoldResult or ShardDone chunks, got {type(data).__name__}")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
