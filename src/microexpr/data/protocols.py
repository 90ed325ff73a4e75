"""Evaluation protocols: sample index -> folds table (one row per fold), and folds -> a fixed number of shards.

A protocol only decides which fold subjects are tested and which are trained on in each fold; it never reads
features or predictions. The folds table is small, plain data (lists of subject ids, JSON strings of class
counts) so the catalog can store it as parquet or CSV, and every training shard reads its folds from it.

Protocols (``make_folds(index, protocol, options)``; docs/protocols.md has the papers and the option shapes):

- ``loso``: one fold per ``fold_subject`` (``fold_000``... in sorted subject order).
- ``megc2019``: LOSO over the composite's dataset-namespaced subjects; ``test_datasets`` names the member
  dataset of each fold for the per-dataset breakdown.
- ``cross_dataset``: train on some datasets, test on others, under one shared label set.
- ``holdout``: a subject-disjoint train:test split (e.g. 3:2), stratified greedily, repeated ``repeats`` times.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("loso", "megc2019", "cross_dataset", "holdout")
INDEX_COLUMNS: tuple[str, ...] = ("sample_id", "dataset", "fold_subject", "label", "label_id", "label_set")
FOLD_COLUMNS: tuple[str, ...] = (
    "fold",
    "protocol",
    "test_subjects",
    "train_subjects",
    "test_datasets",
    "n_train",
    "n_test",
    "train_class_counts",
    "test_class_counts",
    "warnings",
    "shard",
)
SHARD_WEIGHTS: tuple[str, ...] = ("n_train", "n_samples", "uniform")
_COMMON_OPTIONS: frozenset[str] = frozenset({"n_shards", "shard_weights"})
_PROTOCOL_OPTIONS: dict[str, frozenset[str]] = {
    "loso": _COMMON_OPTIONS,
    "megc2019": _COMMON_OPTIONS | {"members"},
    "cross_dataset": _COMMON_OPTIONS | {"train", "test"},
    "holdout": _COMMON_OPTIONS | {"ratio", "repeats", "seed", "resplit"},
}
HOLDOUT_DEFAULTS: dict[str, Any] = {"ratio": [3, 2], "repeats": 5, "seed": 0, "resplit": False}


class ProtocolError(ValueError):
    """The index or the options cannot produce valid folds (empty index, one subject, overlap, label clash)."""


@dataclass
class FoldSpec:
    """Which subjects one fold tests and trains on, before counts and warnings are derived from the index."""

    fold: str
    test_subjects: list[str]
    train_subjects: list[str]
    test_datasets: list[str]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- entry point


def make_folds(index: pd.DataFrame, protocol: str, options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Build the folds table (columns ``FOLD_COLUMNS``, one row per fold) of ``protocol`` on the sample index.

    ``options`` holds the protocol's settings (see ``_PROTOCOL_OPTIONS``) plus ``n_shards`` (default 1) and
    ``shard_weights`` (default ``"n_train"``), which fill the ``shard`` column through ``assign_shards``.
    Unknown option keys are an error, so a typo never silently falls back to a default.
    """
    if protocol not in _BUILDERS:
        raise ProtocolError(f"unknown protocol {protocol!r}; known protocols: {', '.join(PROTOCOLS)}")
    opts = dict(options or {})
    unknown = sorted(set(opts) - _PROTOCOL_OPTIONS[protocol])
    if unknown:
        raise ProtocolError(
            f"protocol {protocol!r} got unknown option(s) {unknown}; allowed: {sorted(_PROTOCOL_OPTIONS[protocol])}"
        )
    validate_index(index)
    used, specs = _BUILDERS[protocol](index, opts)
    warn_test_missing = protocol in ("cross_dataset", "holdout")
    rows = [_fold_row(used, protocol, spec, warn_test_missing=warn_test_missing) for spec in specs]
    folds = pd.DataFrame(rows, columns=list(FOLD_COLUMNS[:-1]))
    folds["shard"] = assign_shards(folds, opts.get("n_shards", 1), opts.get("shard_weights", "n_train"))
    return folds


# ---------------------------------------------------------------------------------------------------- index checks


def validate_index(index: pd.DataFrame) -> None:
    """Raise ProtocolError unless the index has the columns, unique ids and consistent ids a protocol needs.

    Checked: not empty; ``INDEX_COLUMNS`` present; ``sample_id`` unique; no missing subject/dataset/label;
    each ``fold_subject`` belongs to one dataset (namespacing); each label has one ``label_id`` and back.
    """
    if not isinstance(index, pd.DataFrame):
        raise ProtocolError(f"sample index must be a pandas DataFrame, got {type(index).__name__}")
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ProtocolError(f"sample index lacks column(s) {missing}; it has {list(index.columns)}")
    if index.empty:
        raise ProtocolError("sample index is empty: no sample to split (check the ingest exclusions table)")
    duplicated = index.loc[index["sample_id"].duplicated(), "sample_id"]
    if not duplicated.empty:
        raise ProtocolError(f"sample index has duplicate sample_id(s): {_preview(duplicated)}")
    for column in ("dataset", "fold_subject", "label", "label_id"):
        null = index.loc[index[column].isna(), "sample_id"]
        if not null.empty:
            raise ProtocolError(f"sample index has no {column} for sample(s) {_preview(null)}")
    per_subject = index.groupby("fold_subject")["dataset"].unique()
    mixed = {str(s): sorted(map(str, d)) for s, d in per_subject.items() if len(d) > 1}
    if mixed:
        raise ProtocolError(
            f"fold_subject(s) span several datasets {mixed}: fold subjects must be dataset-namespaced "
            "(e.g. 'casme2/sub01', 'samm/006')"
        )
    for key, value in (("label", "label_id"), ("label_id", "label")):
        many = index.groupby(key)[value].nunique()
        if (many > 1).any():
            clash = {
                str(k): sorted(map(str, index.loc[index[key] == k, value].unique()))
                for k in many[many > 1].index
            }
            raise ProtocolError(f"inconsistent {key} -> {value} mapping in the sample index: {clash}")


def _single_label_set(rows: pd.DataFrame, what: str) -> str:
    """The one label set of ``rows``; mixing label sets would pool classes that do not mean the same thing."""
    label_sets = sorted(map(str, rows["label_set"].unique()))
    if len(label_sets) != 1:
        raise ProtocolError(f"{what} mixes label sets {label_sets}; choose one label set for the whole split")
    return label_sets[0]


def _preview(values: Iterable[Any], limit: int = 8) -> str:
    items = [str(v) for v in values]
    shown = ", ".join(items[:limit])
    return f"{shown} (+{len(items) - limit} more)" if len(items) > limit else shown


# ---------------------------------------------------------------------------------------------------- protocols


def _subjects(rows: pd.DataFrame) -> list[str]:
    return sorted(map(str, rows["fold_subject"].unique()))


def _datasets_of(rows: pd.DataFrame, subjects: Iterable[str]) -> list[str]:
    chosen = rows.loc[rows["fold_subject"].isin(list(subjects)), "dataset"]
    return sorted(map(str, chosen.unique()))


def _loso_specs(subjects: Sequence[str], test_dataset_of: Callable[[str], list[str]]) -> list[FoldSpec]:
    """One fold per subject, ``fold_000``... in sorted subject order; every other subject trains."""
    if len(subjects) < 2:
        raise ProtocolError(
            f"leave-one-subject-out needs at least 2 fold subjects, the index has {len(subjects)}: {list(subjects)}"
        )
    width = max(3, len(str(len(subjects) - 1)))
    return [
        FoldSpec(
            fold=f"fold_{i:0{width}d}",
            test_subjects=[subject],
            train_subjects=[s for s in subjects if s != subject],
            test_datasets=test_dataset_of(subject),
        )
        for i, subject in enumerate(subjects)
    ]


def _build_loso(index: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, list[FoldSpec]]:
    _single_label_set(index, "the sample index")
    subjects = _subjects(index)
    return index, _loso_specs(subjects, lambda s: _datasets_of(index, [s]))


def _build_megc2019(index: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, list[FoldSpec]]:
    """LOSO over the composite; the member dataset of a fold is the namespace of its subject (``samm/006``)."""
    _single_label_set(index, "the MEGC2019 composite index")
    subjects = _subjects(index)
    bare = [s for s in subjects if "/" not in s or not s.split("/", 1)[0] or not s.split("/", 1)[1]]
    if bare:
        raise ProtocolError(
            f"megc2019 needs dataset-namespaced fold subjects ('casme2/sub01', 'samm/006'); got {_preview(bare)}"
        )
    present = sorted({s.split("/", 1)[0] for s in subjects})
    members = options.get("members")
    if members is not None:
        expected = sorted(_as_name_list(members, "megc2019 option 'members'"))
        if expected != present:
            raise ProtocolError(
                f"megc2019 expected member datasets {expected} but the index holds {present} "
                f"(missing {sorted(set(expected) - set(present))}, unexpected {sorted(set(present) - set(expected))})"
            )
    return index, _loso_specs(subjects, lambda s: [s.split("/", 1)[0]])


def _build_cross_dataset(index: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, list[FoldSpec]]:
    """One fold: every subject of the ``train`` datasets trains, every subject of the ``test`` datasets tests."""
    for key in ("train", "test"):
        if key not in options:
            raise ProtocolError(f"cross_dataset needs option {key!r} (a dataset name or a list of them)")
    train = _as_name_list(options["train"], "cross_dataset option 'train'")
    test = _as_name_list(options["test"], "cross_dataset option 'test'")
    both = sorted(set(train) & set(test))
    if both:
        raise ProtocolError(f"cross_dataset: dataset(s) {both} are on both the train and the test side")
    present = set(map(str, index["dataset"].unique()))
    absent = sorted((set(train) | set(test)) - present)
    if absent:
        raise ProtocolError(
            f"cross_dataset: dataset(s) {absent} not in the sample index (it holds {sorted(present)})"
        )
    train_rows = index[index["dataset"].isin(train)]
    test_rows = index[index["dataset"].isin(test)]
    _check_shared_label_space(train_rows, test_rows, train, test)
    used = index[index["dataset"].isin(train + test)]
    ignored = index.loc[~index["dataset"].isin(train + test), "dataset"].value_counts()
    if not ignored.empty:
        logger.info("cross_dataset ignores samples of datasets outside train/test: %s", ignored.to_dict())
    spec = FoldSpec(
        fold="cross_000",
        test_subjects=_subjects(test_rows),
        train_subjects=_subjects(train_rows),
        test_datasets=sorted(test),
    )
    return used, [spec]


def _check_shared_label_space(
    train_rows: pd.DataFrame, test_rows: pd.DataFrame, train: list[str], test: list[str]
) -> None:
    """Both sides must use one and the same label set, with the same classes and the same class ids."""
    train_set = _single_label_set(train_rows, f"cross_dataset train side {train}")
    test_set = _single_label_set(test_rows, f"cross_dataset test side {test}")
    if train_set != test_set:
        raise ProtocolError(
            f"cross_dataset needs a shared label set: train {train} uses {train_set!r}, test {test} uses {test_set!r}"
        )
    train_classes = set(map(str, train_rows["label"].unique()))
    test_classes = set(map(str, test_rows["label"].unique()))
    if train_classes != test_classes:
        raise ProtocolError(
            f"cross_dataset label classes differ under label set {train_set!r}: only in train {train}: "
            f"{sorted(train_classes - test_classes)}, only in test {test}: {sorted(test_classes - train_classes)}"
        )


def _build_holdout(index: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, list[FoldSpec]]:
    """``repeats`` subject-disjoint train:test splits (``repeat_0``...), each from a seeded greedy stratifier.

    With ``resplit: false`` (default, as the attribute-embedding paper: one split, several runs) every repeat
    holds the same split and only the training seed, derived from the fold id, differs. With ``resplit: true``
    repeat ``r`` draws its own split from ``numpy.random.default_rng([seed, r])``; repeat 0 is the same split
    in both modes.
    """
    opts = {**HOLDOUT_DEFAULTS, **options}
    test_fraction = _test_fraction(opts["ratio"])
    repeats, seed = opts["repeats"], opts["seed"]
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ProtocolError(f"holdout option 'repeats' must be a positive integer, got {repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ProtocolError(f"holdout option 'seed' must be a non-negative integer, got {seed!r}")
    _single_label_set(index, "the sample index")
    subjects = _subjects(index)
    if len(subjects) < 2:
        raise ProtocolError(
            f"holdout needs at least 2 fold subjects, the index has {len(subjects)}: {subjects}"
        )
    counts = subject_class_matrix(index)
    specs = []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r if opts["resplit"] else 0])
        test_subjects = sorted(stratified_subject_split(counts, test_fraction, rng))
        train_subjects = [s for s in subjects if s not in set(test_subjects)]
        specs.append(
            FoldSpec(
                fold=f"repeat_{r}",
                test_subjects=test_subjects,
                train_subjects=train_subjects,
                test_datasets=_datasets_of(index, test_subjects),
            )
        )
    return index, specs


def _test_fraction(ratio: Any) -> float:
    """``[3, 2]`` or ``"3:2"`` (train:test, over samples) -> the test fraction 0.4."""
    parts = ratio.split(":") if isinstance(ratio, str) else ratio
    try:
        train, test = (float(p) for p in parts)
    except (TypeError, ValueError) as error:
        raise ProtocolError(
            f"holdout option 'ratio' must be train:test like [3, 2] or '3:2', got {ratio!r}"
        ) from error
    if not (train > 0 and test > 0):
        raise ProtocolError(f"holdout option 'ratio' needs two positive numbers, got {ratio!r}")
    return test / (train + test)


def subject_class_matrix(index: pd.DataFrame) -> pd.DataFrame:
    """Samples per (fold_subject, label): rows sorted subjects, columns classes in ``label_id`` order."""
    order = index.drop_duplicates("label").sort_values(["label_id", "label"])["label"].astype(str).tolist()
    table = pd.crosstab(index["fold_subject"].astype(str), index["label"].astype(str))
    return table.reindex(columns=order, fill_value=0).sort_index()


def stratified_subject_split(
    counts: pd.DataFrame, test_fraction: float, rng: np.random.Generator
) -> list[str]:
    """Pick whole subjects for the test side so each class gets about ``test_fraction`` of its samples there.

    Greedy, in a random subject order drawn from ``rng``: (1) for each class held by at least two subjects,
    rarest first, move its first holder to the test side so the class appears on both sides; (2) walk the
    order and move every subject that lowers sum_c (test_c - test_fraction * n_c)^2. A move is refused when it
    would take the last training sample of a class or the last training subject. Hand-written because
    scikit-learn's StratifiedGroupKFold splits into k equal folds, not an arbitrary ratio with coverage.
    """
    subjects = counts.index.tolist()
    order = rng.permutation(len(subjects))
    matrix = counts.to_numpy(dtype=float)[order]
    target = matrix.sum(axis=0) * test_fraction
    in_test = np.zeros(len(order), dtype=bool)

    def keeps_train(i: int) -> bool:
        rest = ~in_test
        rest[i] = False
        had = matrix[~in_test].sum(axis=0) > 0
        return bool(rest.any()) and bool(np.all(matrix[rest].sum(axis=0)[had] > 0))

    def loss(mask: np.ndarray) -> float:
        return float(np.sum((matrix[mask].sum(axis=0) - target) ** 2))

    holders = (matrix > 0).sum(axis=0)
    for c in sorted(range(matrix.shape[1]), key=lambda c: (holders[c], c)):
        if holders[c] < 2 or matrix[in_test, c].sum() > 0:
            continue
        for i in np.flatnonzero(matrix[:, c] > 0):
            if not in_test[i] and keeps_train(i):
                in_test[i] = True
                break
    changed = True
    while changed:
        changed = False
        for i in range(len(order)):
            if in_test[i] or not keeps_train(i):
                continue
            trial = in_test.copy()
            trial[i] = True
            if loss(trial) < loss(in_test):
                in_test, changed = trial, True
    if not in_test.any():
        fallback = next((i for i in range(len(order)) if keeps_train(i)), 0)
        in_test[fallback] = True
    return [subjects[order[i]] for i in np.flatnonzero(in_test)]


_BUILDERS: dict[str, Callable[[pd.DataFrame, dict], tuple[pd.DataFrame, list[FoldSpec]]]] = {
    "loso": _build_loso,
    "megc2019": _build_megc2019,
    "cross_dataset": _build_cross_dataset,
    "holdout": _build_holdout,
}


# ---------------------------------------------------------------------------------------------------- fold rows


def check_disjoint(fold: str, train_subjects: Iterable[str], test_subjects: Iterable[str]) -> None:
    """Raise ProtocolError naming the fold and subject(s) when a subject is on both sides (subject leakage)."""
    overlap = sorted(set(train_subjects) & set(test_subjects))
    if overlap:
        raise ProtocolError(f"fold {fold}: subject(s) {overlap} are in both the train and the test side")


def _class_counts(rows: pd.DataFrame) -> dict[str, int]:
    """label -> count, in ``label_id`` order (so the JSON reads in class order)."""
    if rows.empty:
        return {}
    counted = rows.groupby(["label_id", "label"]).size().sort_index()
    return {str(label): int(n) for (_, label), n in counted.items()}


def _fold_row(
    index: pd.DataFrame, protocol: str, spec: FoldSpec, *, warn_test_missing: bool
) -> dict[str, Any]:
    """Counts and warnings of one fold; raises on overlap or an empty side, logs each warning."""
    check_disjoint(spec.fold, spec.train_subjects, spec.test_subjects)
    train = index[index["fold_subject"].isin(spec.train_subjects)]
    test = index[index["fold_subject"].isin(spec.test_subjects)]
    for side, rows in (("train", train), ("test", test)):
        if rows.empty:
            raise ProtocolError(f"fold {spec.fold}: the {side} side has no sample")
    train_counts, test_counts = _class_counts(train), _class_counts(test)
    classes = list(dict.fromkeys([*train_counts, *test_counts]))
    warnings = list(spec.notes)
    if len(test) == 1:
        warnings.append(
            f"single_test_sample: fold {spec.fold} tests one sample ({test['sample_id'].iloc[0]} of "
            f"{_preview(spec.test_subjects)}); its per-fold metrics are degenerate"
        )
    no_train = [c for c in classes if c not in train_counts]
    if no_train:
        warnings.append(
            f"train_missing_class: fold {spec.fold} has no training sample of class(es) {no_train}; "
            "the model cannot learn them"
        )
    no_test = [c for c in classes if c not in test_counts]
    if warn_test_missing and no_test:
        warnings.append(f"test_missing_class: fold {spec.fold} has no test sample of class(es) {no_test}")
    for message in warnings:
        logger.warning("%s", message)
    return {
        "fold": spec.fold,
        "protocol": protocol,
        "test_subjects": list(spec.test_subjects),
        "train_subjects": list(spec.train_subjects),
        "test_datasets": list(spec.test_datasets),
        "n_train": len(train),
        "n_test": len(test),
        "train_class_counts": json.dumps(train_counts),
        "test_class_counts": json.dumps(test_counts),
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------------------- reading folds


def samples_of_fold(
    index: pd.DataFrame, fold_row: Mapping[str, Any] | pd.Series
) -> tuple[list[str], list[str]]:
    """(train sample ids, test sample ids) of one folds-table row, in index order.

    Accepts a row read back from parquet (arrays) or CSV (strings). Raises ProtocolError when the row's
    ``n_train``/``n_test`` disagree with the index, i.e. the folds table is stale for this index.
    """
    fold = fold_row["fold"]
    train_subjects = as_str_list(fold_row["train_subjects"], f"fold {fold} train_subjects")
    test_subjects = as_str_list(fold_row["test_subjects"], f"fold {fold} test_subjects")
    check_disjoint(fold, train_subjects, test_subjects)
    train_ids = index.loc[index["fold_subject"].isin(train_subjects), "sample_id"].astype(str).tolist()
    test_ids = index.loc[index["fold_subject"].isin(test_subjects), "sample_id"].astype(str).tolist()
    for side, ids in (("train", train_ids), ("test", test_ids)):
        expected = fold_row.get(f"n_{side}")
        if expected is not None and not pd.isna(expected) and int(expected) != len(ids):
            raise ProtocolError(
                f"fold {fold}: the folds table says n_{side}={int(expected)} but the index gives {len(ids)} "
                "samples; the folds table is stale, rerun the split pipeline"
            )
    return train_ids, test_ids


def fold_class_counts(fold_row: Mapping[str, Any] | pd.Series, side: str) -> dict[str, int]:
    """Decode ``train_class_counts`` / ``test_class_counts`` (JSON) of one fold row: label -> count."""
    if side not in ("train", "test"):
        raise ProtocolError(f"side must be 'train' or 'test', got {side!r}")
    return {str(k): int(v) for k, v in json.loads(fold_row[f"{side}_class_counts"]).items()}


def as_str_list(value: Any, what: str) -> list[str]:
    """A list cell as list[str]: list/tuple/array (memory, parquet) or a JSON / Python-literal string (CSV)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError) as error:
                raise ProtocolError(f"{what}: cannot read {value!r} as a list of names") from error
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [str(v) for v in value]
    raise ProtocolError(f"{what}: expected a list of names, got {type(value).__name__}")


def _as_name_list(value: Any, what: str) -> list[str]:
    names = [value] if isinstance(value, str) else as_str_list(value, what)
    if not names or any(not n for n in names):
        raise ProtocolError(f"{what} must name at least one dataset, got {value!r}")
    return names


# ---------------------------------------------------------------------------------------------------- shards


def fold_costs(folds: pd.DataFrame, weights: str | Mapping[str, float] = "n_train") -> pd.Series:
    """Estimated training cost of each fold (index aligned with ``folds``).

    ``"n_train"`` (default): the training samples; per epoch a fold costs about n_train forward+backward
    passes plus n_test forward passes, and the first dominates. ``"n_samples"``: n_train + n_test (for runs
    that evaluate the test side every epoch, e.g. ``selection: oracle_epoch``). ``"uniform"``: 1 per fold.
    A mapping fold id -> cost (e.g. measured seconds of a previous run) is used as given.
    """
    if isinstance(weights, Mapping):
        missing = [f for f in folds["fold"] if f not in weights]
        if missing:
            raise ProtocolError(f"shard weights have no cost for fold(s) {_preview(missing)}")
        costs = folds["fold"].map(lambda f: float(weights[f]))
    elif weights == "n_train":
        costs = folds["n_train"].astype(float)
    elif weights == "n_samples":
        costs = (folds["n_train"] + folds["n_test"]).astype(float)
    elif weights == "uniform":
        costs = pd.Series(1.0, index=folds.index)
    else:
        raise ProtocolError(
            f"unknown shard weights {weights!r}; use one of {SHARD_WEIGHTS} or a fold->cost mapping"
        )
    if (costs < 0).any() or costs.isna().any():
        raise ProtocolError(f"shard costs must be non-negative numbers, got {costs.tolist()}")
    return costs.rename("cost")


def assign_shards(
    folds: pd.DataFrame, n_shards: int, weights: str | Mapping[str, float] = "n_train"
) -> pd.Series:
    """Fold -> shard in ``0..n_shards-1``: greedy longest-processing-time on ``fold_costs``.

    Folds are taken by decreasing cost (ties: fold id ascending) and each goes to the least-loaded shard
    (ties: lowest shard number), so the result depends only on the folds table. Any greedy list schedule keeps
    max load - min load <= the largest single fold cost. With fewer folds than shards some shards stay empty;
    their pipelines then train nothing, which is valid (``n_shards`` is fixed so the Kedro DAG is static).
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ProtocolError(f"n_shards must be a positive integer, got {n_shards!r}")
    duplicated = folds["fold"][folds["fold"].duplicated()]
    if not duplicated.empty:
        raise ProtocolError(f"folds table has duplicate fold id(s): {_preview(duplicated)}")
    costs = fold_costs(folds, weights).tolist()
    ids = folds["fold"].astype(str).tolist()
    loads = [0.0] * int(n_shards)
    shard = [0] * len(ids)
    for i in sorted(range(len(ids)), key=lambda i: (-costs[i], ids[i])):
        k = min(range(len(loads)), key=lambda k: (loads[k], k))
        shard[i] = k
        loads[k] += costs[i]
    return pd.Series(shard, index=folds.index, name="shard", dtype="int64")


def folds_of_shard(folds: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """The folds (possibly none) that shard ``shard`` of ``n_shards`` trains, in fold order.

    Raises when ``shard`` is out of range or the table was built for more shards than ``n_shards`` (stale).
    """
    if not 0 <= shard < n_shards:
        raise ProtocolError(f"shard {shard} is outside 0..{n_shards - 1}")
    if not folds.empty and int(folds["shard"].max()) >= n_shards:
        raise ProtocolError(
            f"folds table assigns shard {int(folds['shard'].max())} but n_shards={n_shards}; rerun the split "
            "pipeline with the same n_shards setting"
        )
    return folds[folds["shard"] == shard].sort_values("fold").reset_index(drop=True)
