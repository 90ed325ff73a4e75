"""`microexpr faces download` against a loopback HTTP server serving generated JPEGs (never the network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import microexpr.__main__ as entry
from microexpr import faces
from microexpr.datasets.face_photos import FacePhotoFolder

PROJECT = Path(__file__).resolve().parents[2]
NAMES = ("001_03.jpg", "002_03.jpg", "010_03.jpg")


@pytest.fixture(autouse=True)
def loopback_without_proxy(monkeypatch):
    """A proxy configured in the environment must not intercept the requests to the loopback server."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def jpeg_bytes(seed: int) -> bytes:
    """A small distinct JPEG per seed."""
    image = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return buffer.tobytes()


def table_for(folder: Path, names: tuple[str, ...]) -> tuple[faces.FaceFile, ...]:
    """The hash table of files as they are in ``folder`` (what the packaged table is for the real mirror)."""
    rows = []
    for name in names:
        data = (folder / name).read_bytes()
        rows.append(faces.FaceFile(name, len(data), hashlib.sha256(data).hexdigest()))
    return tuple(rows)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry of ``folder`` (hidden ones included) with its bytes and mtime."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


class Mirror:
    """A folder served on 127.0.0.1 by http.server in a thread; records the requested paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=root)
        )
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/inst/neutral_front/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def downloads(self) -> int:
        return len(self.requests)


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    folder = root / "inst" / "neutral_front"
    folder.mkdir(parents=True)
    for seed, name in enumerate(NAMES):
        (folder / name).write_bytes(jpeg_bytes(seed))
    served = Mirror(root)
    served.thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture
def rows(mirror):
    return table_for(mirror.root / "inst" / "neutral_front", NAMES)


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "cache" / "microexpr" / "faces" / "london"


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago): the 'offline' case."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/inst/neutral_front/"


def test_packaged_table_pins_102_photos_and_the_url_names_the_commit():
    rows = faces.packaged_table()
    assert len(rows) == 102 and len({r.name for r in rows}) == 102
    assert all(r.name.endswith("_03.jpg") and r.size > 0 and len(r.sha256) == 64 for r in rows)
    assert len(faces.PINNED_COMMIT) == 40
    assert faces.file_url(faces.DEFAULT_BASE_URL, rows[0].name) == (
        f"https://raw.githubusercontent.com/debruine/webmorphR.stim/{faces.PINNED_COMMIT}/inst/neutral_front/"
        f"{rows[0].name}"
    )


def test_download_stores_verified_photos_with_london_names(mirror, rows, dest):
    seen = []
    result = faces.download_faces(
        dest, mirror.url, rows, progress=lambda i, n, row, action: seen.append((i, n, action))
    )
    assert not result.unchanged and sorted(result.downloaded) == [f"london_{n}" for n in NAMES]
    assert seen == [(i, len(NAMES), "downloaded") for i in range(1, len(NAMES) + 1)]
    for name in NAMES:
        assert (dest / f"london_{name}").read_bytes() == (
            mirror.root / "inst" / "neutral_front" / name
        ).read_bytes()
    assert faces.cache_problem(dest) is None
    assert sorted(p.name for p in dest.parent.iterdir()) == ["london"]  # no staging folder left behind


def test_second_run_with_a_complete_cache_downloads_nothing(mirror, rows, dest):
    faces.download_faces(dest, mirror.url, rows)
    before, requests = snapshot(dest), mirror.downloads()
    assert requests == len(NAMES)
    again = faces.download_faces(dest, mirror.url, rows)
    assert again.unchanged and again.downloaded == ()
    assert mirror.downloads() == requests and snapshot(dest) == before


def test_a_damaged_cache_file_is_fetched_again_and_the_others_kept(mirror, rows, dest):
    faces.download_faces(dest, mirror.url, rows)
    damaged = dest / f"london_{NAMES[1]}"
    damaged.write_bytes(b"\x00" * damaged.stat().st_size)  # same size: only the sha256 can tell
    result = faces.download_faces(dest, mirror.url, rows)
    assert result.downloaded == (f"london_{NAMES[1]}",) and len(result.reused) == len(NAMES) - 1
    assert damaged.read_bytes() == (mirror.root / "inst" / "neutral_front" / NAMES[1]).read_bytes()


def test_checksum_mismatch_names_the_file_and_creates_nothing(mirror, rows, dest):
    served = mirror.root / "inst" / "neutral_front" / NAMES[2]
    served.write_bytes(jpeg_bytes(99))
    got = hashlib.sha256(served.read_bytes()).hexdigest()
    with pytest.raises(faces.FacesError) as error:
        faces.download_faces(dest, mirror.url, rows)
    message = str(error.value)
    assert f"checksum mismatch for {NAMES[2]}" in message
    assert rows[2].sha256 in message and got in message and "Nothing was changed" in message
    assert not (dest.parents[2]).exists()  # not even the parents of the cache folder


def test_checksum_mismatch_leaves_an_existing_cache_untouched(mirror, rows, dest):
    faces.download_faces(dest, mirror.url, rows)
    before = snapshot(dest)
    folder = mirror.root / "inst" / "neutral_front"
    (folder / "011_03.jpg").write_bytes(jpeg_bytes(11))
    newer = (*rows, *table_for(folder, ("011_03.jpg",)))  # a newer table: one more photo ...
    (folder / "011_03.jpg").write_bytes(jpeg_bytes(12))  # ... that the mirror serves with other bytes
    with pytest.raises(faces.FacesError, match=r"checksum mismatch for 011_03\.jpg.*untouched"):
        faces.download_faces(dest, mirror.url, newer)
    assert snapshot(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["london"]


def test_offline_says_so_and_changes_nothing(rows, dest):
    with pytest.raises(faces.FacesError) as error:
        faces.download_faces(dest, closed_port_url(), rows, retries=0, timeout=5)
    message = str(error.value)
    assert (
        f"cannot download {NAMES[0]}" in message and "offline" in message and "Nothing was changed" in message
    )
    assert not dest.parents[2].exists()


def test_offline_with_an_existing_cache_leaves_it_untouched(mirror, rows, dest):
    faces.download_faces(dest, mirror.url, rows)
    damaged = dest / f"london_{NAMES[0]}"
    damaged.write_bytes(b"\x00" * damaged.stat().st_size)
    before = snapshot(dest)
    with pytest.raises(faces.FacesError, match="offline.*untouched"):
        faces.download_faces(dest, closed_port_url(), rows, retries=0, timeout=5)
    assert snapshot(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["london"]


def test_missing_file_on_the_mirror_names_it(mirror, rows, dest):
    (mirror.root / "inst" / "neutral_front" / NAMES[1]).unlink()
    with pytest.raises(faces.FacesError, match=rf"cannot download {NAMES[1]} .*HTTP 404"):
        faces.download_faces(dest, mirror.url, rows)
    assert not dest.exists()


def test_a_foreign_non_empty_folder_is_never_replaced(mirror, rows, dest):
    dest.mkdir(parents=True)
    (dest / "my_notes.txt").write_text("mine")
    with pytest.raises(faces.FacesError, match="did not create"):
        faces.download_faces(dest, mirror.url, rows)
    assert [p.name for p in dest.iterdir()] == ["my_notes.txt"] and mirror.downloads() == 0


def test_table_errors_name_the_table(tmp_path):
    bad = tmp_path / "table.csv"
    bad.write_text("file,size,sha256\n../evil.jpg,3,abc\n")
    with pytest.raises(faces.FacesError, match="table.csv.*unsafe"):
        faces.read_table(bad)
    bad.write_text("file,size,sha256\na.jpg,3,xyz\n")
    with pytest.raises(faces.FacesError, match="table.csv.*a.jpg"):
        faces.read_table(bad)


def test_table_round_trips_through_csv(rows):
    assert faces.parse_table(faces.format_table(rows, ["a comment"]), "memory") == rows


def test_default_cache_dir_follows_the_override_then_xdg_then_home(tmp_path):
    assert faces.default_cache_dir({faces.CACHE_ENV: str(tmp_path / "x")}) == tmp_path / "x"
    assert (
        faces.default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)})
        == tmp_path / "microexpr" / "faces" / "london"
    )
    home = Path.home() / ".cache" / "microexpr" / "faces" / "london"
    assert faces.default_cache_dir({"XDG_CACHE_HOME": "relative/ignored"}) == home
    assert faces.default_cache_dir({}) == home


# --- the generator's face folder ----------------------------------------------------------------------------------
def test_unset_faces_folder_uses_the_completed_download(mirror, rows, dest, monkeypatch, caplog):
    faces.download_faces(dest, mirror.url, rows)
    monkeypatch.setenv(faces.CACHE_ENV, str(dest))
    with caplog.at_level(logging.INFO, logger="microexpr.datasets.face_photos"):
        photos = FacePhotoFolder(None).load()
    assert not photos.fallback
    assert list(photos.images) == [f"london_{Path(n).stem}" for n in NAMES]
    assert "DeBruine" in photos.attribution and "CC BY 4.0" in photos.attribution
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


def test_catalog_entry_resolves_to_the_download_when_microexpr_faces_is_unset(
    mirror, rows, dest, monkeypatch
):
    """The whole chain: conf globals (no MICROEXPR_FACES) -> catalog face_photos -> the cache folder."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from microexpr.settings import CONFIG_LOADER_ARGS

    faces.download_faces(dest, mirror.url, rows)
    monkeypatch.delenv("MICROEXPR_FACES", raising=False)
    monkeypatch.setenv(faces.CACHE_ENV, str(dest))
    args = {**CONFIG_LOADER_ARGS, "default_run_env": "base"}  # no personal conf/local overrides
    config = OmegaConfigLoader(conf_source=str(PROJECT / "conf"), **args)["catalog"]
    assert config["face_photos"]["path"] is None
    loaded = DataCatalog.from_config({"face_photos": config["face_photos"]}).load("face_photos")
    photos = loaded() if callable(loaded) else loaded  # FacePhotoFolder, or a deferred loader wrapping it
    assert not photos.fallback and len(photos.images) == len(NAMES)


def test_microexpr_faces_wins_over_the_download(mirror, rows, dest, tmp_path, monkeypatch):
    faces.download_faces(dest, mirror.url, rows)
    monkeypatch.setenv(faces.CACHE_ENV, str(dest))
    own = tmp_path / "own"
    own.mkdir()
    cv2.imwrite(str(own / "someone.png"), np.zeros((8, 8, 3), np.uint8))
    assert list(FacePhotoFolder(str(own)).load().images) == ["someone"]


def test_incomplete_download_falls_back_with_a_warning_naming_the_file(
    mirror, rows, dest, monkeypatch, caplog
):
    faces.download_faces(dest, mirror.url, rows)
    (dest / f"london_{NAMES[0]}").unlink()
    monkeypatch.setenv(faces.CACHE_ENV, str(dest))
    with caplog.at_level(logging.WARNING, logger="microexpr.datasets.face_photos"):
        photos = FacePhotoFolder(None).load()
    assert photos.fallback
    assert any(
        f"london_{NAMES[0]}" in r.getMessage() and "is missing" in r.getMessage() for r in caplog.records
    )


# --- command line -------------------------------------------------------------------------------------------------
def write_table(path: Path, rows) -> Path:
    path.write_text(faces.format_table(rows))
    return path


def test_cli_downloads_with_progress_then_reruns_without_downloading(mirror, rows, dest, tmp_path):
    table = write_table(tmp_path / "table.csv", rows)
    runner = CliRunner()
    args = ["download", "--dest", str(dest), "--table", str(table)]
    first = runner.invoke(faces.faces_cli, args, env={faces.BASE_URL_ENV: mirror.url})
    assert first.exit_code == 0, first.output
    assert "[1/3] 001_03.jpg" in first.output and "[3/3] 010_03.jpg" in first.output
    assert "3 downloaded" in first.output and "DeBruine" in first.output
    second = runner.invoke(faces.faces_cli, [*args, "--base-url", mirror.url])
    assert second.exit_code == 0 and "nothing downloaded" in second.output
    assert mirror.downloads() == len(NAMES)


def test_cli_reports_a_mismatch_and_exits_non_zero(mirror, rows, dest, tmp_path):
    (mirror.root / "inst" / "neutral_front" / NAMES[0]).write_bytes(jpeg_bytes(42))
    table = write_table(tmp_path / "table.csv", rows)
    result = CliRunner().invoke(
        faces.faces_cli, ["download", "--dest", str(dest), "--table", str(table), "--base-url", mirror.url]
    )
    assert result.exit_code == 1
    assert f"Error: checksum mismatch for {NAMES[0]}" in result.output and rows[0].sha256 in result.output
    assert not dest.exists()


# --- the console script: `microexpr faces …` dispatches, anything else is still `kedro run` -------------------------
@pytest.fixture
def fake_run(monkeypatch):
    """Kedro's run command replaced by one that records its options (the project is not run)."""
    calls: list[dict] = []

    @click.command()
    @click.option("--pipelines", default=None)
    @click.option("--env", default=None)
    def run(**options):
        calls.append(options)

    monkeypatch.setattr("kedro.framework.cli.utils.find_run_command", lambda package: run)
    monkeypatch.setattr("kedro.framework.project.configure_project", lambda package: None)
    return calls


def test_console_script_without_subcommand_runs_the_project(fake_run, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["microexpr"])
    with pytest.raises(SystemExit) as done:
        entry.main()
    assert done.value.code == 0 and fake_run == [{"pipelines": None, "env": None}]
    with pytest.raises(SystemExit):
        entry.main(["--pipelines=mmnet", "--env", "quick"])
    assert fake_run[-1] == {"pipelines": "mmnet", "env": "quick"}


def test_console_script_dispatches_faces_download(fake_run, mirror, rows, dest, tmp_path):
    table = write_table(tmp_path / "table.csv", rows)
    with pytest.raises(SystemExit) as done:
        entry.main(
            ["faces", "download", "--dest", str(dest), "--table", str(table), "--base-url", mirror.url]
        )
    assert done.value.code == 0 and fake_run == []
    assert faces.cache_problem(dest) is None


def test_python_dash_m_still_reaches_kedro_run():
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    run_help = subprocess.run(
        [sys.executable, "-m", "microexpr", "--help"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run_help.returncode == 0, run_help.stderr[-2000:]
    assert "--pipelines" in run_help.stdout and "faces download" in run_help.stdout
    faces_help = subprocess.run(
        [sys.executable, "-m", "microexpr", "faces", "download", "--help"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert faces_help.returncode == 0 and "--base-url" in faces_help.stdout
    assert faces.PINNED_COMMIT in "".join(faces_help.stdout.split())  # the default URL, wrapped by click
