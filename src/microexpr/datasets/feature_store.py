"""Content-addressed, versioned store of per-clip feature arrays (aligned frames, flow, ...).

A preprocessing node does not compute features itself: it returns :class:`FeatureJobs`, one picklable job per
clip with a content key (hash of the clip's raw frames, its annotation and every parameter the feature depends
on). ``FeatureStore.save`` runs only the jobs whose key has no blob yet (in a process pool, with progress),
so an unchanged second run recomputes nothing and a changed parameter recomputes exactly what depends on it.
Each save writes a versioned manifest (sample -> key, status, reason); ``load`` returns a :class:`FeatureTable`
with lazy per-clip loaders, the same pattern as Kedro's PartitionedDataset.

What is reused is verified first: a blob is reused only if its zip structure and every member's CRC check out
(truncation, a flipped bit), an exclusion record only if it parses; a bad entry is recomputed with a warning naming
the file and the sample. Files are written atomically and with the permissions the umask allows (docs/reliability.md).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from kedro.io import DatasetError
from kedro.io.core import AbstractVersionedDataset, Version, get_filepath_str
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("sample_id", "key", "status", "reason", "seconds", "reused")


class FeatureExclusion(Exception):
    """Raised by a feature job when a clip cannot yield the feature (e.g. no face on the onset frame).

    The store records it as an exclusion with this message (which names the sample and the file), caches it
    under the job's key like a result, and carries on with the other clips.
    """


@dataclass(frozen=True)
class FeatureJob:
    """Compute one clip's feature: ``fn(**kwargs) -> dict[str, np.ndarray]`` (fn must be module-level)."""

    sample_id: str
    key: str
    fn: Callable[..., dict[str, np.ndarray]]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeatureJobs:
    """What a preprocessing node returns: the jobs of one feature, plus how many worker processes to use."""

    feature: str
    jobs: list[FeatureJob]
    workers: int = 1
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeatureTable:
    """Loaded view of a feature: the manifest and lazy access to each clip's arrays."""

    feature: str
    manifest: pd.DataFrame
    blob_dir: str

    def __len__(self) -> int:
        return int((self.manifest["status"] == "ok").sum())

    def ok_ids(self) -> list[str]:
        return self.manifest.loc[self.manifest["status"] == "ok", "sample_id"].tolist()

    def exclusions(self) -> pd.DataFrame:
        return self.manifest.loc[self.manifest["status"] != "ok", ["sample_id", "reason"]].reset_index(drop=True)

    def key_of(self, sample_id: str) -> str:
        rows = self.manifest.loc[self.manifest["sample_id"] == sample_id, "key"]
        if rows.empty:
            raise KeyError(f"feature {self.feature!r} has no entry for sample {sample_id!r}")
        return str(rows.iloc[0])

    def get(self, sample_id: str) -> dict[str, np.ndarray]:
        """Arrays of one clip (raises KeyError for an excluded or unknown sample)."""
        row = self.manifest.loc[self.manifest["sample_id"] == sample_id]
        if row.empty or row["status"].iloc[0] != "ok":
            reason = "" if row.empty else f": {row['reason'].iloc[0]}"
            raise KeyError(f"feature {self.feature!r} is not available for sample {sample_id!r}{reason}")
        try:
            return read_blob(Path(self.blob_dir), str(row["key"].iloc[0]))
        except DatasetError as exc:
            raise DatasetError(f"feature {self.feature!r} of sample {sample_id!r}: {exc}; rerun the preprocess "
                               "stage to recompute it (docs/reliability.md)") from exc

    def items(self) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for sample_id in self.ok_ids():
            yield sample_id, self.get(sample_id)


def blob_path(blob_dir: Path, key: str) -> Path:
    return blob_dir / key[:2] / f"{key}.npz"


def exclusion_path(blob_dir: Path, key: str) -> Path:
    return blob_dir / key[:2] / f"{key}.excluded.json"


_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def read_blob(blob_dir: Path, key: str) -> dict[str, np.ndarray]:
    """A blob's arrays (never unpickles); a damaged blob raises DatasetError naming the file."""
    path = blob_path(blob_dir, key)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except _READ_ERRORS as exc:
        raise DatasetError(f"cannot read feature blob {path}: {type(exc).__name__}: {exc}") from exc


def blob_problem(path: Path) -> str | None:
    """None when a stored blob is whole (zip structure and every member's CRC), else what is wrong.

    Reads the file once; much cheaper than recomputing the feature, and it catches truncation and flipped bits.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                return f"member {bad} fails its CRC check"
            if not archive.namelist():
                return "empty archive"
    except _READ_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def current_umask() -> int:
    """The process umask (read from /proc on Linux, so no other thread sees a changed umask meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write to a temporary file in the same folder, then rename: a killed run never leaves half a blob.

    The file gets the permissions a plain ``open`` would give (0666 less the umask), not mkstemp's owner-only
    0600, so users sharing a data folder can read each other's features and results.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_job(job: FeatureJob) -> tuple[str, dict[str, np.ndarray] | None, str | None, float]:
    """Worker entry point: run one job, turning FeatureExclusion into a recorded reason."""
    start = time.perf_counter()
    try:
        arrays = job.fn(**job.kwargs)
    except FeatureExclusion as exc:
        return job.sample_id, None, str(exc), time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - re-raised in the parent with the sample named
        raise RuntimeError(f"feature job for sample {job.sample_id!r} failed: {type(exc).__name__}: {exc}") from exc
    return job.sample_id, arrays, None, time.perf_counter() - start


def _init_worker() -> None:
    """One thread per worker: the parallelism is across clips."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 is a hard dependency
        pass


class FeatureStore(AbstractVersionedDataset[FeatureJobs, FeatureTable]):
    """Versioned manifest + content-addressed blobs of one feature.

    ``filepath`` is the manifest (parquet), e.g. ``data/04_feature/key_frames/manifest.parquet`` (versioned like
    any Kedro dataset); blobs live beside it in ``blobs/`` (or ``blob_dir``) and are shared by every version.
    ``max_workers`` caps the worker processes a job list may ask for (default: the number of CPUs).
    """

    def __init__(
        self,
        *,
        filepath: str,
        blob_dir: str | None = None,
        max_workers: int | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        path = PurePosixPath(filepath)
        super().__init__(filepath=path, version=version, exists_function=lambda p: Path(p).exists())
        self._blob_dir = Path(blob_dir) if blob_dir else Path(str(path.parent)) / "blobs"
        self._max_workers = max_workers or os.cpu_count() or 1
        self.metadata = metadata

    def load(self) -> FeatureTable:
        path = get_filepath_str(self._get_load_path(), "file")
        manifest = pd.read_parquet(path)
        feature = str(manifest.attrs.get("feature", Path(str(self._filepath)).parent.name))
        return FeatureTable(feature=feature, manifest=manifest, blob_dir=str(self._blob_dir))

    def save(self, data: FeatureJobs) -> None:
        if not isinstance(data, FeatureJobs):
            raise DatasetError(f"FeatureStore saves FeatureJobs, got {type(data).__name__}")
        records = self._run(data)
        manifest = pd.DataFrame.from_records(records, columns=list(MANIFEST_COLUMNS))
        manifest.attrs["feature"] = data.feature
        path = Path(get_filepath_str(self._get_save_path(), "file"))
        write_atomically(path, lambda handle: manifest.to_parquet(handle, index=False))

    def _cached(self, job: FeatureJob) -> dict[str, Any] | None:
        """The stored outcome of a job if it is there and sound; a damaged entry is removed (and so recomputed)."""
        blob = blob_path(self._blob_dir, job.key)
        if blob.exists():
            problem = blob_problem(blob)
            if problem is None:
                return {"status": "ok", "reason": None}
            logger.warning("Feature blob %s of sample %s is damaged (%s): recomputing it", blob, job.sample_id,
                           problem)
            blob.unlink(missing_ok=True)
            return None
        excluded = exclusion_path(self._blob_dir, job.key)
        if excluded.exists():
            try:
                return {"status": "excluded", "reason": str(json.loads(excluded.read_text())["reason"])}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("Exclusion record %s of sample %s is damaged (%s): recomputing it", excluded,
                               job.sample_id, exc)
                excluded.unlink(missing_ok=True)
        return None

    def _store(self, key: str, arrays: dict[str, np.ndarray] | None, reason: str | None) -> None:
        if arrays is None:
            payload = json.dumps({"reason": reason}).encode()
            write_atomically(exclusion_path(self._blob_dir, key), lambda h: h.write(payload))
        else:
            write_atomically(blob_path(self._blob_dir, key), lambda h: np.savez(h, **arrays))

    def _run(self, data: FeatureJobs) -> list[dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        todo: list[FeatureJob] = []
        for job in data.jobs:
            cached = self._cached(job)
            if cached is None:
                todo.append(job)
            else:
                records[job.sample_id] = {"sample_id": job.sample_id, "key": job.key, **cached,
                                          "seconds": 0.0, "reused": True}
        logger.info("Feature %s: %d clip(s) cached, %d to compute", data.feature, len(records), len(todo))
        keys = {job.sample_id: job.key for job in data.jobs}
        for sample_id, arrays, reason, seconds in self._execute(data.feature, todo, data.workers):
            self._store(keys[sample_id], arrays, reason)
            records[sample_id] = {"sample_id": sample_id, "key": keys[sample_id],
                                  "status": "ok" if arrays is not None else "excluded",
                                  "reason": reason, "seconds": seconds, "reused": False}
        excluded = [r for r in records.values() if r["status"] != "ok"]
        if excluded:
            logger.warning("Feature %s: %d clip(s) excluded, e.g. %s", data.feature, len(excluded), excluded[0]["reason"])
        return [records[job.sample_id] for job in data.jobs]

    def _execute(
        self, feature: str, jobs: list[FeatureJob], workers: int
    ) -> Iterator[tuple[str, dict[str, np.ndarray] | None, str | None, float]]:
        """Run jobs in order of completion; at most ``workers`` clips in memory at once."""
        workers = max(1, min(workers, self._max_workers, len(jobs)))
        interactive = sys.stderr.isatty()
        bar = tqdm(total=len(jobs), desc=f"{feature}", unit="clip", mininterval=2.0 if interactive else 30.0,
                   disable=not jobs)
        try:
            if workers == 1:
                for job in jobs:
                    yield _run_job(job)
                    bar.update()
                return
            # forkserver: workers fork from a server that has imported the recipes (cv2, dlib) once, so each
            # feature's pool starts in well under a second; plain fork is unsafe after torch/OpenMP threads exist.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["microexpr.features.recipes"])
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
                pending = set()
                queue = iter(jobs)
                for job in queue:
                    pending.add(pool.submit(_run_job, job))
                    if len(pending) >= 2 * workers:
                        break
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
                        bar.update()
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending.add(pool.submit(_run_job, nxt))
        finally:
            bar.close()

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), "file")
        except DatasetError:
            return False
        return Path(path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "blob_dir": str(self._blob_dir), "version": self._version}


def manifest_summary(table: FeatureTable) -> Mapping[str, int]:
    """Counts for logs and reports: ok / excluded / reused."""
    m = table.manifest
    return {"ok": int((m["status"] == "ok").sum()), "excluded": int((m["status"] != "ok").sum()),
            "reused": int(m["reused"].sum())}
