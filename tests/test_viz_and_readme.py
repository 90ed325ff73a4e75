"""kedro-viz builds the project's DAG offline, and the README's Quick start is what CI runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    """The shell lines of the README's Quick start section, in order."""
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_quick_start_commands_and_ci_runs_the_test_one() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands), "each Quick start command is one line"
    main, tests = commands
    assert "kedro run --pipelines=mmnet --env quick" in main
    assert "pytest" in tests
    assert tests in (PROJECT / ".ci" / "run").read_text().splitlines()


@pytest.mark.slow
def test_kedro_viz_build_works_offline() -> None:
    """`kedro viz build` writes ./build (git-ignored) in the project root; it has no output-folder option."""
    started = time.time()
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-m", "kedro", "viz", "build"], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Failed" not in log and "Success" in log, log[-4000:]
    main = PROJECT / "build" / "api" / "main"
    assert main.stat().st_mtime >= started - 1
    graph = json.loads(main.read_text())
    names = {node["name"] for node in graph["nodes"]}
    assert {"index_raw_dataset", "plan_key_frames", "make_folds"} <= names
    assert any(n.endswith("train_shard") for n in names)
    assert {p["id"] for p in graph["pipelines"]} >= {"ingest", "preprocess", "split", "mmnet"}
    assert "heap" not in (PROJECT / "build" / "index.html").read_text().lower()  # telemetry off: no analytics
