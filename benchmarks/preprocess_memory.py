"""Peak memory and wall time of `kedro run --pipelines=preprocess` on a CASME II-sized synthetic set, and the
time of a second, unchanged run (the reuse check: target <= 5 % of the first).

Memory is the peak, over the run, of the summed resident set size of the kedro process and all its children
(the feature workers), sampled every 0.1 s with psutil. Target: <= 2 GiB.

Usage:
    python benchmarks/preprocess_memory.py            # uses `--env benchmark` (26 subjects x 9-10 clips)
    python benchmarks/preprocess_memory.py --env quick
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parents[1]


def run_tracked(args: list[str]) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak summed RSS of its process tree in bytes)."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [parent, *parent.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        except psutil.NoSuchProcess:
            break
        peak = max(peak, total)
        time.sleep(0.1)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-4000:]}")
    return time.perf_counter() - start, peak


def data_root_of(env: str) -> Path:
    """The env's data folder (``data_root`` in conf/<env>/globals.yml, else the base ``data``)."""
    import yaml

    globals_file = PROJECT / "conf" / env / "globals.yml"
    overrides = yaml.safe_load(globals_file.read_text()) if globals_file.exists() else None
    return PROJECT / ((overrides or {}).get("data_root") or "data")


def latest_json(data_root: Path, dataset: str, back: int = 1) -> dict:
    """The ``back``-th newest saved version of a versioned JSON dataset."""
    files = sorted(glob.glob(str(data_root / f"{dataset}/*/{Path(dataset).name}")))
    return json.loads(Path(files[-back]).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="benchmark")
    args = parser.parse_args()
    kedro = [sys.executable, "-m", "kedro", "run", "--env", args.env]

    ingest_s, _ = run_tracked([*kedro, "--pipelines=ingest"])
    data_root = data_root_of(args.env)
    summary = latest_json(data_root, "03_primary/ingest_summary.json")
    print(f"ingest: {summary['n_samples']} clips of {summary['n_subjects']} subjects in {ingest_s:.0f} s")
    first_s, first_peak = run_tracked([*kedro, "--pipelines=preprocess"])
    second_s, second_peak = run_tracked([*kedro, "--pipelines=preprocess"])
    stats = latest_json(data_root, "04_feature/preprocess_summary.json", back=2)
    compute = {k: round(v["compute_seconds"]) for k, v in stats.items()}
    print(f"preprocess, first run: {first_s:.0f} s wall, peak RSS {first_peak / 2**30:.2f} GiB "
          f"(kedro process + feature workers); compute seconds per feature {compute}")
    print(f"preprocess, second run (nothing changed): {second_s:.1f} s wall, peak RSS {second_peak / 2**30:.2f} GiB")
    print(f"second/first: {100 * second_s / first_s:.1f} %  (whole `kedro run`, start-up included)")


if __name__ == "__main__":
    main()
