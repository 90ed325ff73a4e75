"""Kedro dataset that reads a raw micro-expression dataset folder into a :class:`Snapshot` (read-only).

It reads the annotation sheets the source declares (as raw cells) and lists every image file with a cheap
integrity check, so a corrupt or truncated frame is reported at ingest, naming the file, instead of crashing a
later stage. Each file is read once: that read feeds the integrity check, a BLAKE2b content digest (what the
content keys of the feature store hash, so a replaced frame is seen and a moved folder is not) and the image
header (size and channels, so a clip mixing frame sizes or colour and greyscale is excluded at ingest). The parsing itself (dataset quirks) is pure code in ``microexpr.data.sources``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from microexpr.data.records import IMAGE_EXTENSIONS, FrameFile, Snapshot
from microexpr.data.sources import SourceSpec, get_source

logger = logging.getLogger(__name__)

IntegrityMode = Literal["header", "decode", "none"]


def default_root(source: str, raw_dir: str = "data/01_raw") -> str:
    """Where a source's raw folder lives when ``raw_roots`` does not name it: ``<raw_dir>/<source>``."""
    return f"{raw_dir.rstrip('/')}/{source}"


def check_image_bytes(path: Path, size: int, data: bytes | None = None) -> str | None:
    """Cheap structural check of an image file: start marker and, for JPEG/PNG, the end marker.

    Catches empty, truncated and mislabelled files without decoding them. ``data``: the file's bytes when the
    caller has read them already (else two small reads). Returns None when the file looks whole, else the
    problem in words.
    """
    if size == 0:
        return "empty file (0 bytes)"
    ext = path.suffix.lower()
    if data is not None:
        head, tail = data[:8], data[max(0, size - 64):]
    else:
        with path.open("rb") as handle:
            head = handle.read(8)
            handle.seek(max(0, size - 64))
            tail = handle.read(64)
    if ext in (".jpg", ".jpeg"):
        if head[:2] != b"\xff\xd8":
            return "not a JPEG: missing start-of-image marker"
        if b"\xff\xd9" not in tail:
            return "truncated JPEG: no end-of-image marker"
    elif ext == ".png":
        if head != b"\x89PNG\r\n\x1a\n":
            return "not a PNG: bad signature"
        if b"IEND" not in tail:
            return "truncated PNG: no IEND chunk"
    elif ext == ".bmp":
        if head[:2] != b"BM":
            return "not a BMP: bad signature"
        declared = int.from_bytes(head[2:6], "little")
        if declared > size:
            return f"truncated BMP: header declares {declared} bytes, file has {size}"
    return None


def check_image_decodes(path: Path) -> str | None:
    """Full decode with OpenCV (slow; ``integrity: decode``)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return "cannot be decoded by OpenCV"
    return None


_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def content_digest(data: bytes) -> str:
    """BLAKE2b-128 of a file's bytes (fast in pure CPython: about 1 GB/s per core)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def image_shape(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, channels: 1 grey / 3 colour) from the image header, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return int(height), int(width), 1 if image.mode in _GREY_MODES else 3
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def inspect_frame(path: Path, rel: str, integrity: IntegrityMode) -> FrameFile:
    """One read of the file: integrity check, content digest and header shape."""
    data = path.read_bytes()
    problem = None
    if integrity != "none":
        problem = check_image_bytes(path, len(data), data)
        if problem is None and integrity == "decode":
            problem = check_image_decodes(path)
    shape = image_shape(data) if problem is None and data else None
    return FrameFile(relpath=rel, size=len(data), problem=problem, digest=content_digest(data), shape=shape)


def list_image_dirs(root: Path, integrity: IntegrityMode) -> dict[str, list[FrameFile]]:
    """Every folder under ``root`` that directly holds image files, with those files (listing order kept)."""
    found: dict[str, list[FrameFile]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        images = [f for f in filenames if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
        if not images:
            continue
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        found[rel_dir] = [
            inspect_frame(Path(dirpath) / name, f"{rel_dir}/{name}" if rel_dir != "." else name, integrity)
            for name in images
        ]
    return found


def find_annotation_files(root: Path, globs: tuple[str, ...], depth: int) -> list[Path]:
    """Annotation files matching the source's globs, at most ``depth`` folders below the root, sorted."""
    matches = []
    for dirpath, dirnames, filenames in os.walk(root):
        level = len(Path(dirpath).relative_to(root).parts)
        if level >= depth:
            dirnames.clear()
        for name in filenames:
            if name.startswith(("~$", ".")):
                continue  # Office lock files and hidden files
            if any(fnmatch.fnmatch(name.lower(), g.lower()) for g in globs):
                matches.append(Path(dirpath) / name)
    return sorted(matches)


_EXCEL_SIGNATURES = {".xlsx": b"PK\x03\x04", ".xlsm": b"PK\x03\x04", ".xls": b"\xd0\xcf\x11\xe0"}


def excel_problem(path: Path) -> str | None:
    """None when a workbook starts with its format's signature; else what the file looks like instead."""
    signature = _EXCEL_SIGNATURES.get(path.suffix.lower())
    if signature is None:
        return None
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(signature):
        return None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        return None  # the other Excel generation under the wrong suffix: let pandas try its engines
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    lines = [line for line in text.splitlines() if line.strip()]
    if not head.strip():
        return "not an Excel file (it is empty)"
    if lines and any(sep in lines[0] for sep in (",", ";", "\t")):
        return (f"not an Excel file (looks like CSV): rename it to {path.with_suffix('.csv').name} or save it "
                f"as {path.suffix} from a spreadsheet program")
    return f"not an Excel file (does not start with the {path.suffix} signature)"


def read_table(path: Path, root: Path) -> dict[str, pd.DataFrame]:
    """Raw cells of an annotation file: every sheet of a workbook, or the CSV; no header inference. A workbook
    that is not one (a CSV saved under .xlsx) is refused with an error that says so and names the file."""
    rel = path.relative_to(root).as_posix()
    problem = excel_problem(path)
    if problem is not None:
        raise DatasetError(f"cannot read annotation file {path}: {problem}")
    try:
        if path.suffix.lower() == ".csv":
            return {rel: pd.read_csv(path, header=None, dtype=object, keep_default_na=False, skip_blank_lines=False)}
        sheets = pd.read_excel(path, sheet_name=None, header=None, dtype=object)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes an error naming the file
        raise DatasetError(f"cannot read annotation file {path}: {exc}") from exc
    tables = {}
    for i, (sheet, frame) in enumerate(sheets.items()):
        tables[rel if i == 0 else f"{rel}#{sheet}"] = frame
    return tables


def read_snapshot(spec: SourceSpec, root: Path, integrity: IntegrityMode = "header") -> Snapshot:
    """Read one root (not its composite parts) into a Snapshot."""
    root = root.expanduser()
    if not root.is_dir():
        return Snapshot(dataset=spec.name, root=str(root.absolute()), root_exists=False)
    root = root.resolve()
    tables: dict[str, pd.DataFrame] = {}
    for path in find_annotation_files(root, spec.annotation_globs, spec.annotation_depth):
        tables.update(read_table(path, root))
    dirs = list_image_dirs(root, integrity) if not spec.parts else {}
    return Snapshot(dataset=spec.name, root=str(root), tables=tables, dirs=dirs)


class RawDatasetSource(AbstractDataset[None, Snapshot]):
    """Read-only Kedro dataset: ``load()`` returns the Snapshot of the selected raw dataset.

    Args:
        source: a ``dataset`` value (``synthetic``, ``casme2``, ``samm``, ``smic_hs``, ..., ``megc2019``).
        roots: raw root per source; a source missing from it uses ``<raw_dir>/<source>``. Relative roots are
            resolved against the working directory (the project root under ``kedro run``).
        raw_dir: the raw data layer folder (default ``data/01_raw``).
        integrity: ``header`` (default: start/end markers), ``decode`` (full OpenCV decode) or ``none``.
    """

    def __init__(
        self,
        *,
        source: str,
        roots: dict[str, str] | None = None,
        integrity: IntegrityMode = "header",
        raw_dir: str = "data/01_raw",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._spec = get_source(source)
        self._roots = {k: str(v) for k, v in (roots or {}).items() if v}
        self._raw_dir = raw_dir
        if integrity not in ("header", "decode", "none"):
            raise ValueError(f"integrity must be header, decode or none, not {integrity!r}")
        self._integrity: IntegrityMode = integrity
        self.metadata = metadata

    def root_of(self, source: str) -> Path:
        return Path(self._roots.get(source) or default_root(source, self._raw_dir))

    def load(self) -> Snapshot:
        snapshot = read_snapshot(self._spec, self.root_of(self._spec.name), self._integrity)
        for part in self._spec.parts:
            snapshot.parts[part] = read_snapshot(get_source(part), self.root_of(part), self._integrity)
        n_files = sum(len(v) for v in snapshot.dirs.values()) + sum(
            len(f) for p in snapshot.parts.values() for f in p.dirs.values()
        )
        logger.info(
            "Read raw dataset %s from %s: %d annotation table(s), %d image file(s)",
            self._spec.name,
            snapshot.root,
            len(snapshot.tables) + sum(len(p.tables) for p in snapshot.parts.values()),
            n_files,
        )
        return snapshot

    def save(self, data: None) -> None:
        raise DatasetError("RawDatasetSource is read-only: raw datasets are never written by the pipeline")

    def _exists(self) -> bool:
        return self.root_of(self._spec.name).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"source": self._spec.name, "roots": self._roots, "integrity": self._integrity}
