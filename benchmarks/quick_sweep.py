"""Train one model's LOSO folds on an already built quick bundle under settings overrides, as the pipeline would.

How a quick demo's settings are chosen and documented (docs/models.md, MOL "Quick demo"; docs/performance.md).
Every fold is trained with ``train_fold`` and the pipeline's per-fold seed (``fold_seed``), so a setting's
predictions are what ``kedro run --pipelines=<model> --env quick`` computes with the same parameters (up to the
floating-point effect of the thread count). Per fold, one JSON line is appended to ``--out``: the
**training-side** signals a setting is chosen on (training accuracy and loss terms per epoch, on the augmented
training clips), the test labels and the honest (last epoch) and oracle-epoch decisions, the task's auxiliary
metrics and the process CPU seconds (the work an idle machine would do, whatever the contention). ``--pool``
pools a setting's folds (from one or several processes) into UF1/UAR per selection.

Usage (after ``kedro run --pipelines=<model> --env quick`` built ``05_model_input``):
    PYTHONPATH=src python benchmarks/quick_sweep.py mol e24 '{"training": {"epochs": 24}}' --out sweep.jsonl \
        --folds 0 1          # fold positions; several processes can share the folds of one setting
    PYTHONPATH=src python benchmarks/quick_sweep.py mol e24 --pool --out sweep.jsonl
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from microexpr.evaluation.metrics import core_metrics
from microexpr.project import open_project
from microexpr.training.loop import train_fold
from microexpr.training.results import fold_seed
from microexpr.training.selection import oracle_epoch

ROOT = Path(__file__).resolve().parents[1]


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` deep-merged into ``base`` (mappings merge, anything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = merged(out[key], value) if nested else value
    return out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_folds(model: str, override: Mapping[str, Any], positions: list[int] | None, env: str,
                seed: int | None) -> Iterator[dict[str, Any]]:
    """One record per fold (at ``positions`` of the fold table, default all) under the overridden parameters."""
    project = open_project(env, start=ROOT)
    block = merged(project.config["parameters"][model], override)
    catalog = project.catalog()  # the newest versions, wherever the env's data_root / results_root put them
    bundle = catalog.load(f"{model}.model_input")
    folds = catalog.load("folds")
    if positions is not None:
        folds = folds.iloc[positions]
    base_seed = int(block["seed"] if seed is None else seed)
    subjects = bundle["fold_subject"]
    for _, row in folds.iterrows():
        started, cpu = time.perf_counter(), cpu_seconds()
        train_idx = np.flatnonzero(np.isin(subjects, list(row["train_subjects"])))
        test_idx = np.flatnonzero(np.isin(subjects, list(row["test_subjects"])))
        outcome = train_fold(model, block["model"], bundle, train_idx, test_idx, block["training"],
                             fold_seed(base_seed, str(row["fold"])), task_cfg=block.get("task"))
        y = bundle["y"][test_idx]
        chosen = oracle_epoch(outcome.epoch_probs, y, outcome.evaluated_epochs)
        history = outcome.history
        yield {
            "fold": str(row["fold"]), "seed": base_seed, "classes": [str(c) for c in bundle["classes"]],
            "y": y.tolist(), "honest": outcome.epoch_probs[-1].argmax(1).tolist(),
            "oracle_epoch": outcome.epoch_probs[list(outcome.evaluated_epochs).index(chosen)].argmax(1).tolist(),
            "per_epoch": {c: [round(float(v), 4) for v in history[c]] for c in history
                          if c == "train_acc" or c.startswith("train_loss_")},
            "aux": {k: float(np.mean(v)) for k, v in outcome.auxiliary.items()},
            "precision": outcome.precision,
            "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
        }


def pool(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled metrics of one setting's fold records; training-side means over folds (last epoch and per epoch)."""
    classes = records[0]["classes"]
    truth = np.concatenate([r["y"] for r in records])
    out: dict[str, Any] = {"folds": len(records), "cpu_s": round(sum(r["cpu_s"] for r in records), 1)}
    curves = {k: np.mean([r["per_epoch"][k] for r in records], axis=0) for k in records[0]["per_epoch"]}
    out["train_acc_last"] = round(float(curves["train_acc"][-1]), 3)
    out["train_loss_last"] = {k[len("train_loss_"):]: round(float(v[-1]), 3) for k, v in curves.items()
                              if k.startswith("train_loss_")}
    out["train_acc_per_epoch"] = [round(float(v), 2) for v in curves["train_acc"]]
    out["train_ce_per_epoch"] = [round(float(v), 2) for v in curves.get("train_loss_ce", [])]
    for selection in ("honest", "oracle_epoch"):
        metrics = core_metrics(truth, np.concatenate([r[selection] for r in records]), classes)
        out[selection] = {k: round(metrics[k], 3) for k in ("acc", "uf1", "uar")}
    aux_names = records[0]["aux"]
    out["aux"] = {k: round(float(np.mean([r["aux"][k] for r in records])), 3) for k in aux_names}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("name", help="a label for this setting")
    parser.add_argument("override", nargs="?", default="{}", help="JSON deep-merged into the model's parameter block")
    parser.add_argument("--folds", type=int, nargs="*", default=None, help="fold positions (default: all)")
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: the block's)")
    parser.add_argument("--env", default="quick")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per fold")
    parser.add_argument("--pool", action="store_true", help="pool the folds of NAME found in --out")
    args = parser.parse_args()
    if args.pool:
        lines = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
        records = [r for r in lines if r["name"] == args.name]
        sys.stdout.write(json.dumps({"name": args.name, "override": records[0]["override"], **pool(records)}) + "\n")
        return
    override = json.loads(args.override)
    for record in train_folds(args.model, override, args.folds, args.env, args.seed):
        with args.out.open("a") as handle:
            handle.write(json.dumps({"name": args.name, "override": override, **record}) + "\n")
        sys.stdout.write(f"{args.name} {record['fold']}: train_acc {record['per_epoch']['train_acc'][-1]}, "
                         f"cpu_s {record['cpu_s']}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
