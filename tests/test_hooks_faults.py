"""Tracking faults (issue 10 rows 8 and 9): stale RUNNING runs are closed, a fresh store is created once."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from microexpr.hooks import FoldTrackingHook, close_stale_runs, prepare_tracking_store

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store_made_by_two_processes(tmp_path_factory) -> tuple[Path, list[int], list[str]]:
    """Two processes open the same fresh sqlite store at the same moment (one migration, shared by the tests)."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder}/mlflow.db"
    script = ("import sys, pathlib; from microexpr.hooks import prepare_tracking_store; "
              "prepare_tracking_store(sys.argv[1], pathlib.Path(sys.argv[2]))")
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", script, uri, str(folder)], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    return folder / "mlflow.db", [p.returncode for p in procs], errors


def test_two_first_runs_at_once_create_one_working_store(store_made_by_two_processes, tmp_path: Path) -> None:
    """Row 9: both processes succeed (file lock), and the store they made works."""
    db, codes, errors = store_made_by_two_processes
    assert codes == [0, 0], errors
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    assert client.create_experiment("row9", artifact_location=str(tmp_path / "mlruns"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_running_runs_of_a_dead_process_are_marked_killed(store_made_by_two_processes, tmp_path: Path
                                                                ) -> None:
    """Row 8: a SIGKILLed run's parent and fold runs stay RUNNING; the next run on the host closes them."""
    shutil.copy(store_made_by_two_processes[0], tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("microexpr", artifact_location=str(tmp_path / "mlruns"))
    host = socket.gethostname()

    def run(pid: int | None, run_host: str = host, parent: str | None = None) -> str:
        tags = {"microexpr.host": run_host} if parent is None else {"mlflow.parentRunId": parent}
        if pid is not None:
            tags["microexpr.pid"] = str(pid)
        return client.create_run(experiment, tags=tags).info.run_id

    killed = run(_dead_pid())
    killed_fold = run(None, parent=killed)
    alive = run(os.getpid())
    other_host = run(_dead_pid(), run_host="another-node")
    finished = run(_dead_pid())
    client.set_terminated(finished, status="FINISHED")
    current = run(os.getpid())

    closed = close_stale_runs(client, experiment, current, host)
    assert sorted(closed) == sorted([killed, killed_fold])
    status = {r: client.get_run(r).info.status for r in (killed, killed_fold, alive, other_host, finished, current)}
    assert status == {killed: "KILLED", killed_fold: "KILLED", alive: "RUNNING", other_host: "RUNNING",
                      finished: "FINISHED", current: "RUNNING"}
    note = client.get_run(killed).data.tags["mlflow.note.content"]
    assert current in note and "killed or crashed" in note


def test_the_hook_prepares_the_store_before_kedro_mlflow() -> None:
    """Row 9: our after_context_created runs first (tryfirst), so the locked creation precedes kedro-mlflow's."""
    assert FoldTrackingHook.after_context_created.kedro_impl["tryfirst"] is True


@pytest.mark.parametrize("uri", ["http://tracking.example:5000", "mlruns"])
def test_a_server_or_file_store_is_left_alone(tmp_path: Path, uri: str) -> None:
    prepare_tracking_store(uri, tmp_path)
    assert list(tmp_path.iterdir()) == []
