"""``microexpr faces download``: the Face Research Lab London Set (neutral frontal photos) in a user cache folder.

Without a faces folder every synthetic subject derives from two public-domain photos, so under LOSO the test
subject's face is also in the training set. This module fetches the 102 London photos from their public mirror,
pinned to a commit, checks each file against the sha256 table shipped in the package
(``microexpr/data/london_neutral_front.csv``) and moves the verified set into the cache folder in one step: offline,
on an HTTP error or on a checksum mismatch nothing changes. Photos are stored as ``london_<id>_<nn>.jpg`` so the face
reader gives them the London attribution. Standard library only (urllib, hashlib).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import io
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

MIRROR_REPOSITORY = "debruine/webmorphR.stim"
MIRROR_FOLDER = "inst/neutral_front"
PINNED_COMMIT = "fa8b78fda2d659bb74ce62fcd99c4407551d2a77"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{MIRROR_REPOSITORY}/{PINNED_COMMIT}/{MIRROR_FOLDER}/"
BASE_URL_ENV = "MICROEXPR_FACES_URL"
CACHE_ENV = "MICROEXPR_FACES_CACHE"
TABLE_RESOURCE = "london_neutral_front.csv"
LOCAL_PREFIX = "london_"
MANIFEST_NAME = ".microexpr-faces.csv"
LONDON_CITATION = (
    "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
    "https://doi.org/10.6084/m9.figshare.5047666.v5 - licence CC BY 4.0"
)

_COLUMNS = ("file", "size", "sha256")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHUNK = 1 << 16


class FacesError(RuntimeError):
    """A faces table that cannot be used or a download that could not complete (the message names the file)."""


@dataclass(frozen=True)
class FaceFile:
    """One row of a hash table: file name (on the mirror, or in the cache for a manifest), size in bytes, sha256."""

    name: str
    size: int
    sha256: str

    @property
    def local_name(self) -> str:
        """Name in the cache folder: ``london_<name>``, the pattern the face reader attributes to the London set."""
        return LOCAL_PREFIX + self.name


@dataclass(frozen=True)
class DownloadResult:
    """Where the photos are, which files were fetched, which were copied from a previous cache (cache names)."""

    folder: Path
    downloaded: tuple[str, ...]
    reused: tuple[str, ...]
    unchanged: bool


ProgressFn = Callable[[int, int, FaceFile, str], None]


# --- hash tables --------------------------------------------------------------------------------------------------
def parse_table(text: str, source: str) -> tuple[FaceFile, ...]:
    """Rows of a ``file,size,sha256`` CSV (``#`` lines are comments); an unusable row is an error naming it."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or tuple(reader.fieldnames[:3]) != _COLUMNS:
        raise FacesError(f"faces table {source}: the header must start with {','.join(_COLUMNS)}")
    rows: list[FaceFile] = []
    for row in reader:
        name, size, digest = (str(row.get(c) or "").strip() for c in _COLUMNS)
        if not _SAFE_NAME.match(name):
            raise FacesError(f"faces table {source}: unsafe or empty file name {name!r}")
        if not size.isdigit() or not _SHA256.match(digest.lower()):
            raise FacesError(
                f"faces table {source}: row {name}: size must be an integer and sha256 64 hex digits"
            )
        rows.append(FaceFile(name=name, size=int(size), sha256=digest.lower()))
    names = [r.name for r in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FacesError(f"faces table {source}: duplicate file names {duplicates}")
    return tuple(rows)


def format_table(rows: Sequence[FaceFile], comments: Sequence[str] = ()) -> str:
    """The CSV text :func:`parse_table` reads back (comments first, one ``# `` line each)."""
    out = io.StringIO()
    out.writelines(f"# {c}\n" for c in comments)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    writer.writerows((r.name, r.size, r.sha256) for r in rows)
    return out.getvalue()


def packaged_table() -> tuple[FaceFile, ...]:
    """The table shipped in the package: the London set's neutral frontal photos at :data:`PINNED_COMMIT`."""
    text = resources.files("microexpr.data").joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
    return parse_table(text, f"microexpr/data/{TABLE_RESOURCE}")


def read_table(path: Path) -> tuple[FaceFile, ...]:
    """A user-given table (``--table``), e.g. for another commit of the mirror or a test fixture."""
    try:
        return parse_table(Path(path).read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise FacesError(f"cannot read faces table {path}: {exc}") from None


def local_rows(rows: Sequence[FaceFile]) -> tuple[FaceFile, ...]:
    """The table rows under their cache names (what the manifest of a cache folder lists)."""
    return tuple(FaceFile(r.local_name, r.size, r.sha256) for r in rows)


# --- locations ----------------------------------------------------------------------------------------------------
def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$MICROEXPR_FACES_CACHE``, else ``$XDG_CACHE_HOME/microexpr/faces/london``, else ``~/.cache/…``."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV, "").strip():
        return Path(env[CACHE_ENV].strip()).expanduser()
    xdg = Path(env.get("XDG_CACHE_HOME", "").strip()).expanduser()
    root = xdg if xdg.is_absolute() else Path.home() / ".cache"  # the XDG spec ignores relative values
    return root / "microexpr" / "faces" / "london"


def file_url(base_url: str, name: str) -> str:
    """URL of one file under the mirror folder ``base_url``."""
    return base_url.rstrip("/") + "/" + urllib.parse.quote(name)


# --- cache state --------------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_problem(folder: Path) -> str | None:
    """None when ``folder`` holds a completed download (manifest + every listed file at its listed size), else why
    not. Sizes only, so the face reader can call it on every load; ``faces download`` re-checks the sha256."""
    manifest = Path(folder) / MANIFEST_NAME
    if not manifest.is_file():
        return f"{folder} has no {MANIFEST_NAME} (no completed `microexpr faces download` there)"
    try:
        rows = parse_table(manifest.read_text(encoding="utf-8"), str(manifest))
    except (OSError, UnicodeDecodeError, FacesError) as exc:
        return f"unreadable manifest {manifest}: {exc}"
    if not rows:
        return f"{manifest} lists no photos"
    for row in rows:
        path = Path(folder) / row.name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != row.size:
            return f"{path} has {path.stat().st_size} bytes, the manifest says {row.size}"
    return None


def downloaded_faces_folder(env: Mapping[str, str] | None = None) -> Path | None:
    """The default cache folder when it holds a completed download, else None."""
    folder = default_cache_dir(env)
    return folder if cache_problem(folder) is None else None


def is_verified_cache(folder: Path, rows: Sequence[FaceFile]) -> bool:
    """True when ``folder`` is a completed download of exactly ``rows`` and every file's sha256 matches."""
    if cache_problem(folder) is not None:
        return False
    manifest = parse_table((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"), MANIFEST_NAME)
    expected = local_rows(rows)
    if set(manifest) != set(expected):
        return False
    return all(sha256_file(Path(folder) / r.name) == r.sha256 for r in expected)


def _matches(path: Path, row: FaceFile) -> bool:
    """A file already on disk with the row's size and sha256."""
    return path.is_file() and path.stat().st_size == row.size and sha256_file(path) == row.sha256


# --- download -----------------------------------------------------------------------------------------------------
def fetch_file(url: str, target: Path, max_bytes: int, timeout: float) -> tuple[int, str]:
    """Stream ``url`` into ``target`` reading at most ``max_bytes`` (+1 to detect a larger file); (bytes, sha256)."""
    digest, count = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
        while count <= max_bytes:
            chunk = response.read(min(_CHUNK, max_bytes + 1 - count))
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            count += len(chunk)
    return count, digest.hexdigest()


def _fetch_with_retries(
    url: str, target: Path, row: FaceFile, timeout: float, retries: int
) -> tuple[int, str]:
    """:func:`fetch_file`, retrying network errors and HTTP 5xx; a final failure raises naming the file."""
    for attempt in range(retries + 1):
        try:
            return fetch_file(url, target, row.size, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == retries:
                raise FacesError(
                    f"cannot download {row.name} from {url}: HTTP {exc.code} {exc.reason}"
                ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            if attempt == retries:
                reason = getattr(exc, "reason", None) or exc
                raise FacesError(
                    f"cannot download {row.name} from {url}: {reason} (offline, or the mirror is unreachable?)"
                ) from None
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _fill_staging(
    staging: Path,
    dest: Path,
    rows: Sequence[FaceFile],
    base_url: str,
    progress: ProgressFn | None,
    timeout: float,
    retries: int,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Put every row's verified file into ``staging``: copied from ``dest`` when it already matches, else fetched."""
    downloaded: list[str] = []
    reused: list[str] = []
    for index, row in enumerate(rows, start=1):
        target = staging / row.local_name
        if _matches(dest / row.local_name, row):
            shutil.copyfile(dest / row.local_name, target)
            reused.append(row.local_name)
            action = "verified, kept"
        else:
            url = file_url(base_url, row.name)
            count, digest = _fetch_with_retries(url, target, row, timeout, retries)
            if count != row.size or digest != row.sha256:
                got = f"more than {row.size} bytes" if count > row.size else f"{digest} ({count} bytes)"
                raise FacesError(
                    f"checksum mismatch for {row.name} from {url}: expected sha256 {row.sha256} ({row.size} bytes), "
                    f"got {got}"
                )
            downloaded.append(row.local_name)
            action = "downloaded"
        if progress is not None:
            progress(index, len(rows), row, action)
    return tuple(downloaded), tuple(reused)


def _check_replaceable(dest: Path) -> None:
    """Refuse a destination that is a file, or a non-empty folder this command did not create (never delete it)."""
    if dest.exists() and not dest.is_dir():
        raise FacesError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MANIFEST_NAME).is_file():
        raise FacesError(
            f"{dest} is a non-empty folder that `microexpr faces download` did not create (no {MANIFEST_NAME}); "
            "choose another --dest or empty it"
        )


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the created ones, deepest first (to undo on failure)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir()
    return missing


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Rename ``staging`` to ``dest`` (one rename when ``dest`` is absent); an old ``dest`` is retired, then removed."""
    if not dest.exists():
        os.rename(staging, dest)
        return
    retired = dest.parent / f".{dest.name}.old-{os.getpid()}-{time.time_ns()}"
    os.rename(dest, retired)
    try:
        os.rename(staging, dest)
    except OSError:
        os.rename(retired, dest)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _nothing_changed(dest: Path) -> str:
    """The closing sentence of every failure: what state ``dest`` was left in."""
    if dest.exists():
        return f"Nothing was changed: the faces in {dest} are untouched."
    return f"Nothing was changed: {dest} was not created."


def download_faces(
    dest: Path,
    base_url: str = DEFAULT_BASE_URL,
    rows: Sequence[FaceFile] | None = None,
    *,
    progress: ProgressFn | None = None,
    timeout: float = 60.0,
    retries: int = 2,
) -> DownloadResult:
    """Fill ``dest`` with the verified photos of ``rows`` (default: the packaged table) fetched from ``base_url``.

    Idempotent: a complete cache whose files match the table is left as is and nothing is fetched. Otherwise every
    file is fetched (or copied from ``dest`` when it already matches) into a temporary sibling folder, checked, and
    only then moved into place; any failure raises :class:`FacesError` and leaves the file system as it was.
    """
    rows = tuple(packaged_table() if rows is None else rows)
    if not rows:
        raise FacesError("the faces table lists no files")
    dest = Path(dest).expanduser().absolute()
    if is_verified_cache(dest, rows):
        return DownloadResult(dest, (), tuple(r.local_name for r in rows), unchanged=True)
    try:
        _check_replaceable(dest)
    except FacesError as exc:
        raise FacesError(f"{exc}. {_nothing_changed(dest)}") from None
    created = _make_parents(dest.parent)
    staging = dest.parent / f".{dest.name}.partial-{os.getpid()}-{time.time_ns()}"
    staging.mkdir()  # beside dest (same file system, so the final rename is atomic); mode follows the umask
    try:
        downloaded, reused = _fill_staging(staging, dest, rows, base_url, progress, timeout, retries)
        comments = (
            f"Face Research Lab London Set photos downloaded by `microexpr faces download` from {base_url}",
            f"Attribution required when derived frames are shown or shared: {LONDON_CITATION}",
        )
        (staging / MANIFEST_NAME).write_text(format_table(local_rows(rows), comments), encoding="utf-8")
        _swap_into_place(staging, dest)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        for path in created:
            with contextlib.suppress(OSError):
                path.rmdir()
        if isinstance(exc, FacesError):
            raise FacesError(f"{exc}. {_nothing_changed(dest)}") from None
        raise
    return DownloadResult(dest, downloaded, reused, unchanged=False)


# --- command line -------------------------------------------------------------------------------------------------
def _echo_progress(index: int, total: int, row: FaceFile, action: str) -> None:
    """One line per file on stderr (readable in CI logs as well as in a terminal)."""
    width = len(str(total))
    click.echo(f"[{index:>{width}}/{total}] {row.name}  {row.size:>9,} bytes  {action}", err=True)


@click.group(name="faces")
def faces_cli() -> None:
    """Face photographs for the synthetic dataset."""


@faces_cli.command("download")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Folder to fill (default: ${CACHE_ENV}, else $XDG_CACHE_HOME/microexpr/faces/london, else "
    "~/.cache/microexpr/faces/london). The synthetic set reads the default folder when MICROEXPR_FACES is unset.",
)
@click.option(
    "--base-url",
    envvar=BASE_URL_ENV,
    default=DEFAULT_BASE_URL,
    show_default=True,
    help=f"URL of the folder the files are fetched from (env {BASE_URL_ENV}); a file:// URL reads a local copy.",
)
@click.option(
    "--table",
    "table_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV (file,size,sha256) to check the files against, instead of the packaged table for the pinned commit.",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True, help="Seconds per request."
)
def download_command(dest: Path | None, base_url: str, table_path: Path | None, timeout: float) -> None:
    """Download the Face Research Lab London Set (102 neutral frontal photos, CC BY 4.0), checking each sha256."""
    folder = Path(dest or default_cache_dir()).expanduser().absolute()
    try:
        rows = read_table(table_path) if table_path else packaged_table()
        result = download_faces(folder, base_url, rows, progress=_echo_progress, timeout=timeout)
    except FacesError as exc:
        raise click.ClickException(str(exc)) from None
    if result.unchanged:
        click.echo(f"{len(rows)} face photos already in {folder} and verified: nothing downloaded.")
    else:
        click.echo(
            f"{len(rows)} face photos verified and stored in {folder} "
            f"({len(result.downloaded)} downloaded, {len(result.reused)} kept)."
        )
    if folder == default_cache_dir().expanduser().absolute():
        click.echo("The synthetic dataset uses them whenever MICROEXPR_FACES is unset.")
    else:
        click.echo(
            f"To use them, set MICROEXPR_FACES={folder} (or synthetic_faces in conf/local/globals.yml)."
        )
    click.echo(f"Attribution, required when frames derived from them are shown or shared: {LONDON_CITATION}.")
