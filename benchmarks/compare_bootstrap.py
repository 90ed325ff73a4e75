"""Time the comparison step (leaderboard intervals + paired tests) against a per-resample Python loop baseline.

Workload of the issue: 5 models × 2 selections × 500 samples (26 subjects, 5 classes), 2,000 bootstrap resamples
and 2,000 permutations. Ours: microexpr.evaluation.compare (resamples as one matrix product). Baseline, in the same
run: the same statistics with a Python loop over resamples that rebuilds each resampled table and scores it with
scikit-learn (what a straightforward implementation does); the baseline is timed on a slice of the resamples and
scaled, and says so.

    python benchmarks/compare_bootstrap.py [--resamples 2000] [--baseline-resamples 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, recall_score

from microexpr.evaluation.compare import ModelResult, leaderboard, paired_comparisons

CLASSES = [f"c{k}" for k in range(5)]


def synthetic_results(n_models: int = 5, n_samples: int = 500, n_subjects: int = 26, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    subjects = np.sort(rng.integers(0, n_subjects, n_samples))
    y = rng.integers(0, len(CLASSES), n_samples)
    results = []
    for m in range(n_models):
        tables = []
        for selection, skill in (("honest", 0.5 + 0.05 * m), ("oracle_epoch", 0.6 + 0.05 * m)):
            pred = np.where(rng.random(n_samples) < skill, y, rng.integers(0, len(CLASSES), n_samples))
            tables.append(pd.DataFrame({
                "sample_id": [f"d/s{s}/clip{i}" for i, s in enumerate(subjects)], "dataset": "d",
                "subject": [f"s{s}" for s in subjects], "fold_subject": [f"d/s{s}" for s in subjects],
                "fold": [f"fold_{s:03d}" for s in subjects], "y_true": y, "y_pred": pred, "selection": selection,
                "epoch": 1}))
        metrics = {"model": f"model{m}", "dataset": "d", "label_set": "five", "classes": CLASSES}
        results.append(ModelResult(f"model{m}", pd.concat(tables, ignore_index=True), metrics))
    return results


def ours(results: list, resamples: int) -> float:
    started = time.perf_counter()
    leaderboard(results, n_resamples=resamples)
    paired_comparisons(results, ["uf1", "acc"], n_resamples=resamples, n_permutations=resamples)
    return time.perf_counter() - started


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    labels = list(range(len(CLASSES)))
    return {"acc": accuracy_score(y, p), "uf1": f1_score(y, p, labels=labels, average="macro", zero_division=0),
            "uar": recall_score(y, p, labels=sorted(set(y)), average="macro", zero_division=0),
            "wf1": f1_score(y, p, labels=labels, average="weighted", zero_division=0)}


def baseline(results: list, resamples: int) -> float:
    """Per resample: draw subjects, concatenate their rows, score with scikit-learn; same for paired tests."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for result in results:  # leaderboard: 4 metrics with intervals per model x selection
        for selection in ("honest", "oracle_epoch"):
            table = result.selection(selection)
            groups = [g for _, g in table.groupby("fold_subject")]
            for _ in range(resamples):
                drawn = pd.concat([groups[k] for k in rng.integers(0, len(groups), len(groups))])
                _scores(drawn["y_true"].to_numpy(), drawn["y_pred"].to_numpy())
    for a in range(len(results)):  # paired: bootstrap and permutation per pair, selection and metric
        for b in range(a + 1, len(results)):
            for selection in ("honest", "oracle_epoch"):
                ta, tb = results[a].selection(selection), results[b].selection(selection)
                y, pa, pb = ta["y_true"].to_numpy(), ta["y_pred"].to_numpy(), tb["y_pred"].to_numpy()
                codes = pd.factorize(ta["fold_subject"])[0]
                members = [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]
                for _ in range(resamples):
                    rows = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
                    _scores(y[rows], pa[rows]), _scores(y[rows], pb[rows])
                    swap = rng.random(y.size) < 0.5
                    _scores(y, np.where(swap, pb, pa)), _scores(y, np.where(swap, pa, pb))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--baseline-resamples", type=int, default=20,
                        help="resamples the slow baseline really runs; its time is scaled to --resamples")
    args = parser.parse_args()
    results = synthetic_results()
    ours_s = ours(results, args.resamples)
    base_s = baseline(results, args.baseline_resamples) * args.resamples / args.baseline_resamples
    lines = [
        f"workload: 5 models x 2 selections x 500 samples, {args.resamples} resamples and permutations",
        f"ours (vectorised):            {ours_s:8.2f} s   (target <= 30 s)",
        f"baseline (per-resample loop): {base_s:8.2f} s   (measured on {args.baseline_resamples} resamples, "
        f"scaled x{args.resamples / args.baseline_resamples:g})",
        f"ratio baseline / ours:        {base_s / ours_s:8.1f} x",
    ]
    print("\n".join(lines))  # noqa: T201 - a benchmark reports on stdout


if __name__ == "__main__":
    main()
