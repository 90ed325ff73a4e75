"""Kedro dataset that writes the synthetic set in CASME II's on-disk layout, chunk by chunk (not versioned).

The node ``generate_synthetic_dataset`` is a generator; Kedro calls ``save()`` once per yielded chunk:

* :class:`SyntheticSkipped` → nothing is written (another dataset is selected);
* :class:`ClipRender` → ``<path>/CASME2_RAW_selected/subXX/<clip>/img<N>.jpg``, reused when the folder's
  ``.key`` equals the chunk's content key, else rendered into a temporary folder and renamed into place;
* :class:`SyntheticManifest` → ``CASME2-coding-20140508.xlsx``, ``README.md``, ``manifest.json``, and removal
  of clip folders the manifest does not list.

The root carries a marker file ``.microexpr-synthetic``; the writer refuses to touch a non-empty folder without
it, so a user's real data can never be overwritten or pruned.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from microexpr.data.synthetic import (
    ANNOTATION_FILE,
    CASME2_COLUMNS,
    FRAMES_FOLDER,
    ClipRender,
    SyntheticChunk,
    SyntheticManifest,
    SyntheticSkipped,
)

logger = logging.getLogger(__name__)

MARKER_FILE = ".microexpr-synthetic"
KEY_FILE = ".key"
MANIFEST_FILE = "manifest.json"
README_FILE = "README.md"
_TMP_PREFIX = ".tmp-"


def write_annotation_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """Write the CASME II coding sheet: header row with the 9 names (the two ``Unnamed: k`` cells left blank),
    ints as Excel numbers, AU cells as given (int or text). Written to a temporary file, then renamed."""
    if tuple(frame.columns) != CASME2_COLUMNS:
        raise ValueError(f"annotation columns must be {CASME2_COLUMNS}, got {tuple(frame.columns)}")
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        frame.to_excel(writer, sheet_name="Sheet1", index=False, header=False, startrow=1)
        sheet = writer.sheets["Sheet1"]
        for col, name in enumerate(CASME2_COLUMNS, start=1):
            if not name.startswith("Unnamed:"):
                sheet.cell(row=1, column=col, value=name)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class SyntheticCasme2Dataset(AbstractDataset[SyntheticChunk, dict[str, Any]]):
    """Writes the synthetic dataset under ``path`` (CASME II layout); ``load()`` returns its manifest dict.

    Args:
        path: dataset root, e.g. ``data/01_raw/synthetic`` (the raw root the CASME II reader reads).
        log_every_s: seconds between progress log lines while clips are written.
    """

    def __init__(self, path: str, log_every_s: float = 10.0, metadata: dict[str, Any] | None = None) -> None:
        self._root = Path(path)
        self._log_every_s = log_every_s
        self.metadata = metadata
        self._progress = {"rendered": 0, "reused": 0, "frames": 0}
        self._started = 0.0
        self._last_log = 0.0

    # --- safety -------------------------------------------------------------------------------------------------
    def _claim_root(self) -> None:
        """Create the root with its marker, or check that an existing non-empty root carries the marker."""
        marker = self._root / MARKER_FILE
        if marker.is_file():
            return
        if self._root.exists():
            if not self._root.is_dir():
                raise DatasetError(f"synthetic dataset path {self._root} exists and is not a folder")
            if any(self._root.iterdir()):
                raise DatasetError(
                    f"refusing to write the synthetic dataset into {self._root}: the folder is not empty and has no "
                    f"{MARKER_FILE} marker, so it may hold real data. Point the synthetic dataset to an empty or "
                    "generator-owned folder."
                )
        self._root.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            "This folder is written by microexpr's synthetic generator; its content is replaced.\n"
        )

    # --- chunks -------------------------------------------------------------------------------------------------
    def save(self, data: SyntheticChunk) -> None:
        if isinstance(data, SyntheticSkipped):
            logger.info("Synthetic dataset not generated: %s", data.reason)
            return
        if isinstance(data, ClipRender):
            self._claim_root()
            self._save_clip(data)
            return
        if isinstance(data, SyntheticManifest):
            self._claim_root()
            self._save_manifest(data)
            return
        raise DatasetError(
            f"SyntheticCasme2Dataset cannot save a {type(data).__name__}; expected SyntheticSkipped, ClipRender "
            "or SyntheticManifest chunks from generate_synthetic_dataset"
        )

    def _save_clip(self, chunk: ClipRender) -> None:
        if chunk.index == 0 or not self._started:
            self._progress = {"rendered": 0, "reused": 0, "frames": 0}
            self._started = self._last_log = time.monotonic()
            # A new generation starts: until its manifest is saved the folder is not a complete dataset.
            for name in (MANIFEST_FILE, ANNOTATION_FILE):
                (self._root / name).unlink(missing_ok=True)
        final = self._root / chunk.relpath
        if self._is_current(final, chunk):
            self._progress["reused"] += 1
        else:
            self._render_into_place(chunk, final)
            self._progress["rendered"] += 1
            self._progress["frames"] += len(chunk.frame_numbers)
        self._log_progress(chunk)

    @staticmethod
    def _is_current(folder: Path, chunk: ClipRender) -> bool:
        """True when the folder holds this exact clip: same content key and every expected frame present."""
        key_file = folder / KEY_FILE
        if not key_file.is_file() or key_file.read_text().strip() != chunk.key:
            return False
        return all((folder / f"img{n}.jpg").is_file() for n in chunk.frame_numbers)

    def _render_into_place(self, chunk: ClipRender, final: Path) -> None:
        frames = chunk.render()
        if len(frames) != len(chunk.frame_numbers):
            raise DatasetError(
                f"synthetic clip {chunk.relpath}: render() returned {len(frames)} frames, expected "
                f"{len(chunk.frame_numbers)}"
            )
        tmp = final.parent / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(chunk.jpeg_quality)]
        for number, frame in zip(chunk.frame_numbers, frames, strict=True):
            path = tmp / f"img{number}.jpg"
            if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
                raise DatasetError(f"cannot write synthetic frame {path}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        (final / KEY_FILE).write_text(chunk.key + "\n")

    def _log_progress(self, chunk: ClipRender) -> None:
        now = time.monotonic()
        done = chunk.index + 1
        if done != chunk.total and now - self._last_log < self._log_every_s:
            return
        self._last_log = now
        elapsed = max(now - self._started, 1e-9)
        rate = done / elapsed
        logger.info(
            "Synthetic clips %d/%d (%d rendered, %d reused, %d frames written), %.1f clips/s, %.0f s elapsed, "
            "about %.0f s left",
            done,
            chunk.total,
            self._progress["rendered"],
            self._progress["reused"],
            self._progress["frames"],
            rate,
            elapsed,
            (chunk.total - done) / rate,
        )

    def _save_manifest(self, manifest: SyntheticManifest) -> None:
        listed = {(c["subject"], c["clip"]) for c in manifest.clips}
        missing = [
            f"{s}/{c}"
            for s, c in sorted(listed)
            if not (self._root / FRAMES_FOLDER / s / c / KEY_FILE).is_file()
        ]
        if missing:
            raise DatasetError(
                f"synthetic manifest lists {len(missing)} clip(s) that were not written under "
                f"{self._root / FRAMES_FOLDER}, e.g. {missing[:3]}; the clip chunks must be saved first"
            )
        removed = self._remove_stale(listed)
        write_annotation_xlsx(manifest.annotation, self._root / ANNOTATION_FILE)
        _write_text(self._root / README_FILE, manifest.readme)
        _write_text(self._root / MANIFEST_FILE, json.dumps(manifest.to_json(), indent=2) + "\n")
        logger.info(
            "Synthetic dataset written to %s: %d subjects, %d clips, %d frames (%d stale folder(s) removed)%s",
            self._root,
            len(manifest.subjects),
            len(manifest.clips),
            manifest.n_frames,
            removed,
            "; FALLBACK faces (smoke tests only)" if manifest.fallback else "",
        )

    def _remove_stale(self, listed: set[tuple[str, str]]) -> int:
        """Delete clip folders (and emptied subject folders, leftover temporaries) the manifest does not list."""
        frames_root = self._root / FRAMES_FOLDER
        if not frames_root.is_dir():
            return 0
        removed = 0
        subjects = {s for s, _ in listed}
        for subject_dir in sorted(p for p in frames_root.iterdir() if p.is_dir()):
            for clip_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
                if (subject_dir.name, clip_dir.name) not in listed:
                    shutil.rmtree(clip_dir)
                    removed += 1
            if subject_dir.name not in subjects and not any(subject_dir.iterdir()):
                subject_dir.rmdir()
        return removed

    # --- reading ------------------------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        path = self._root / MANIFEST_FILE
        if not path.is_file():
            return {"generated": False, "path": str(self._root)}
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"synthetic manifest {path} is not valid JSON: {exc}") from exc
        manifest["path"] = str(self._root)
        return manifest

    def _exists(self) -> bool:
        return (self._root / MANIFEST_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._root)}
