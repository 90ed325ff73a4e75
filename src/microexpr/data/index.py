"""The sample index: one row per micro-expression clip, built from any dataset's parser with shared policies.

``build_sample_index`` runs the dataset's parser (``microexpr.data.sources``), applies the annotation corrections
table (``conf/base/annotation_corrections.csv``), then turns every Candidate into exactly one index row or one
exclusion, with the policies below (``options``; defaults in ``DEFAULT_OPTIONS``, see docs/datasets.md)::

    options = {
        "reader": {...},                 # parser options, merged over the SourceSpec's (annotation_file, frames_dir, ...)
        "missing_apex": "exclude",       # or "midpoint": apex = nearest present frame to (onset + offset) // 2
        "missing_apex_by_dataset": {"smic_hs": "midpoint", "smic_vis": "midpoint", "smic_nir": "midpoint"},
        "missing_frames": "record",      # or "exclude": frames missing inside onset..offset
        "on_corrupt_frame": "exclude",   # or "error": raise, naming the sample and the file
        "min_frames": 2,                 # fewer frames in onset..offset -> too_short (no motion to measure)
        "exclude_subjects": {},          # {"casme2/sub18": "why"}: every sample of the subject -> subject_excluded
        "warn_label_excluded_fraction": 0.25,  # WARNING when the label set excludes more of the labelled samples
    }

Label set: ``label_set`` None means the dataset's default (labels.yml ``defaults``); a set without a rule for the
dataset is refused before anything is read (``microexpr.data.labels.resolve_label_set``). The resolved name is the
index's ``label_set`` column. A composite's samples (megc2019) are labelled by the composite's rule, from its
ground truth, although they keep their member's ``dataset``.

A repeated sample id is a ``duplicate`` before anything else (the first occurrence, in parser order, is used),
then a subject listed in ``exclude_subjects`` is ``subject_excluded``. Then, in order (the first failing check
names the exclusion): clip folder found and inside the root; onset and offset present with onset <= offset; label
under the chosen label set; apex present (or the missing-apex policy) and inside onset..offset; frames in
onset..offset present, unique and intact (corrupt -> ``corrupt_frame``, missing -> ``missing_frames`` policy; a
missing onset or annotated apex frame always excludes); at least ``min_frames`` frames (else ``too_short``); every
frame of the clip the same size and the same colour/greyscale kind, by the image headers (else
``mixed_frame_geometry``, naming the odd frame). Parsers' own exclusions are passed through unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from microexpr.data.au import parse_au_string
from microexpr.data.labels import (
    LABEL_REASON_CODES,
    REASON_LABEL_DROPPED,
    REASON_UNKNOWN_EMOTION,
    LabelSet,
    load_label_sets,
    normalise_emotion,
    resolve_label_set,
)
from microexpr.data.records import EXCLUSION_COLUMNS, Candidate, Exclusion, Snapshot
from microexpr.data.sources import SOURCES, get_source

logger = logging.getLogger(__name__)

INDEX_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "dataset",
    "subject",
    "clip",
    "fold_subject",
    "root",
    "clip_dir",
    "frame_paths",
    "frame_numbers",
    "n_frames",
    "missing_frames",
    "onset",
    "apex",
    "offset",
    "apex_source",
    "fps",
    "au_raw",
    "aus",
    "au_codes",
    "au_unparsed",
    "emotion_raw",
    "emotion",
    "objective_class",
    "label_set",
    "label",
    "label_id",
    "annotation_file",
    "annotation_row",
    "corrections",
    "notes",
)

DEFAULT_OPTIONS: dict[str, Any] = {
    "reader": {},
    "missing_apex": "exclude",
    # SMIC never annotates an apex, so excluding would empty it; the midpoint is what MEB and most papers use.
    "missing_apex_by_dataset": {"smic_hs": "midpoint", "smic_vis": "midpoint", "smic_nir": "midpoint"},
    "missing_frames": "record",
    "on_corrupt_frame": "exclude",
    # a clip with fewer frames in onset..offset is excluded (too_short): no feature can measure motion in it
    "min_frames": 2,
    # fold subject ("casme2/sub18") -> why; e.g. the MMNet 3-class reference never uses CASME II sub18
    "exclude_subjects": {},
    # a WARNING lists the reasons when the label set excludes more than this fraction of the samples it labels
    "warn_label_excluded_fraction": 0.25,
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "missing_apex": ("exclude", "midpoint"),
    "missing_frames": ("record", "exclude"),
    "on_corrupt_frame": ("exclude", "error"),
}

CORRECTION_COLUMNS: tuple[str, ...] = ("dataset", "subject", "clip", "field", "value", "source", "note")
CORRECTABLE_FIELDS: tuple[str, ...] = ("onset", "apex", "offset", "emotion", "au")

# Reason codes the builder itself emits (parsers add theirs: docs/datasets.md lists all of them).
BUILDER_REASON_CODES: tuple[str, ...] = (
    "clip_dir_missing",
    "path_escapes_root",
    "missing_onset_offset",
    "onset_after_offset",
    "missing_apex",
    "apex_outside_range",
    "no_frames_in_range",
    "duplicate_frame_number",
    "corrupt_frame",
    "missing_frames",
    "onset_frame_missing",
    "apex_frame_missing",
    "too_short",
    "mixed_frame_geometry",
    "duplicate",
    "subject_excluded",
)
# Exclusions decided before the label check: these samples never reach the label set.
_BEFORE_LABEL_CODES = frozenset(
    {
        "duplicate",
        "subject_excluded",
        "clip_dir_missing",
        "path_escapes_root",
        "missing_onset_offset",
        "onset_after_offset",
    }
)


class CorruptFrameError(ValueError):
    """A frame inside a sample's onset..offset failed the integrity check and ``on_corrupt_frame`` is ``error``."""


@dataclasses.dataclass
class CorrectedCandidate:
    """A Candidate after the corrections table, with a description of each applied fix (for the index)."""

    candidate: Candidate
    corrections: list[str] = dataclasses.field(default_factory=list)
    corrected_fields: set[str] = dataclasses.field(default_factory=set)


def resolve_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with the user's options; unknown keys and values raise, naming the accepted ones.

    A given ``missing_apex_by_dataset`` replaces the default map (write ``{}`` to apply ``missing_apex`` everywhere).
    """
    given = dict(options or {})
    unknown = sorted(set(given) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown ingest option(s) {unknown}; accepted: {sorted(DEFAULT_OPTIONS)}")
    resolved = {**DEFAULT_OPTIONS, **given}
    resolved["reader"] = dict(resolved["reader"] or {})
    resolved["missing_apex_by_dataset"] = dict(resolved["missing_apex_by_dataset"] or {})
    for key, choices in _CHOICES.items():
        if resolved[key] not in choices:
            raise ValueError(f"ingest option {key} must be one of {choices}, not {resolved[key]!r}")
    for dataset, policy in resolved["missing_apex_by_dataset"].items():
        if policy not in _CHOICES["missing_apex"]:
            raise ValueError(
                f"ingest option missing_apex_by_dataset.{dataset} must be one of {_CHOICES['missing_apex']}, "
                f"not {policy!r}"
            )
    resolved["exclude_subjects"] = _check_excluded_subjects(resolved["exclude_subjects"])
    min_frames = resolved["min_frames"]
    if isinstance(min_frames, bool) or not isinstance(min_frames, int) or min_frames < 1:
        raise ValueError(f"ingest option min_frames must be an integer >= 1, not {min_frames!r}")
    fraction = resolved["warn_label_excluded_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
        raise ValueError(
            f"ingest option warn_label_excluded_fraction must be a number in [0, 1], not {fraction!r}"
        )
    return resolved


def _check_excluded_subjects(given: object) -> dict[str, str]:
    """``exclude_subjects`` as {"<dataset>/<subject>": reason}: known dataset names, a non-empty reason each."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ValueError(
            "ingest option exclude_subjects must map fold subjects to the reason, e.g. "
            f"{{'casme2/sub18': 'the reference code never uses it'}}, not {given!r}"
        )
    checked: dict[str, str] = {}
    for subject, reason in given.items():
        dataset, _, name = str(subject).partition("/")
        if dataset not in SOURCES or not name.strip():
            raise ValueError(
                f"ingest option exclude_subjects: {subject!r} is not '<dataset>/<subject>' with a dataset among "
                f"{', '.join(SOURCES)}"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"ingest option exclude_subjects.{subject}: give the reason (a non-empty text)")
        checked[f"{dataset}/{name.strip()}"] = reason.strip()
    return checked


# ----------------------------------------------------------------------------------------------- corrections
def _subject_key(text: object) -> str:
    """Subject compared loosely: case-insensitive, leading zeros of numbers ignored (``006`` = ``6``,
    ``sub01`` = ``sub1``), so a corrections CSV read with numeric inference still matches."""
    raw = str(text).strip().lower()
    if raw.endswith(".0") and raw[:-2].isdigit():
        raw = raw[:-2]
    return re.sub(r"\d+", lambda m: str(int(m.group(0))), raw)


def _clean(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value).strip()


def validate_corrections(corrections: pd.DataFrame | None) -> pd.DataFrame:
    """The corrections table with its columns checked; raises naming the CSV row of each problem."""
    if corrections is None:
        return pd.DataFrame(columns=list(CORRECTION_COLUMNS))
    missing = [col for col in CORRECTION_COLUMNS if col not in corrections.columns]
    if missing:
        raise ValueError(
            f"annotation corrections table lacks column(s) {missing}; expected {list(CORRECTION_COLUMNS)}"
        )
    problems = []
    for i, row in enumerate(corrections.itertuples(index=False), start=2):  # CSV line 1 is the header
        record = {col: _clean(getattr(row, col)) for col in CORRECTION_COLUMNS}
        if not (record["dataset"] and record["subject"] and record["clip"]):
            problems.append(f"line {i}: dataset, subject and clip are required")
        if record["field"] not in CORRECTABLE_FIELDS:
            problems.append(f"line {i}: field {record['field']!r} is not one of {CORRECTABLE_FIELDS}")
        elif record["field"] in ("onset", "apex", "offset") and not re.fullmatch(
            r"\d+(\.0+)?", record["value"]
        ):
            problems.append(f"line {i}: {record['field']} value {record['value']!r} is not a frame number")
        if not record["source"]:
            problems.append(f"line {i}: source is required (where the fix comes from)")
    if problems:
        raise ValueError("annotation corrections table: " + "; ".join(problems))
    return corrections


def apply_corrections(
    candidates: Sequence[Candidate], corrections: pd.DataFrame | None, datasets_in_run: set[str] | None = None
) -> list[CorrectedCandidate]:
    """Apply each correction row to the Candidates with its (dataset, subject, clip); never mutates the inputs.

    A correction for a dataset of this run that matches no Candidate is logged as a warning (it may name a sample
    the parser excluded, or be keyed wrongly); corrections for other datasets are counted in an info line.
    """
    table = validate_corrections(corrections)
    out = [CorrectedCandidate(candidate=c) for c in candidates]
    by_key: dict[tuple[str, str, str], list[CorrectedCandidate]] = {}
    for item in out:
        c = item.candidate
        by_key.setdefault((c.dataset, _subject_key(c.subject), c.clip), []).append(item)
    in_run = datasets_in_run if datasets_in_run is not None else {c.dataset for c in candidates}
    other = 0
    for i, row in enumerate(table.itertuples(index=False), start=2):
        record = {col: _clean(getattr(row, col)) for col in CORRECTION_COLUMNS}
        key = (record["dataset"], _subject_key(record["subject"]), record["clip"])
        targets = by_key.get(key, [])
        if not targets:
            if record["dataset"] in in_run:
                logger.warning(
                    "annotation correction line %d (%s/%s/%s %s=%s, source %s) matches no sample of this run",
                    i,
                    record["dataset"],
                    record["subject"],
                    record["clip"],
                    record["field"],
                    record["value"],
                    record["source"],
                )
            else:
                other += 1
            continue
        for item in targets:
            _apply_one(item, record)
    if other:
        logger.info("%d annotation correction(s) concern datasets not in this run", other)
    return out


def _apply_one(item: CorrectedCandidate, record: Mapping[str, str]) -> None:
    field, value = record["field"], record["value"]
    c = item.candidate
    attr = {"emotion": "emotion_raw", "au": "au_raw"}.get(field, field)
    old = getattr(c, attr)
    new: object = int(float(value)) if field in ("onset", "apex", "offset") else value
    item.candidate = dataclasses.replace(c, **{attr: new}, notes=list(c.notes))
    note = f"; {record['note']}" if record["note"] else ""
    item.corrections.append(f"{field}: {old!r} -> {new!r} (source: {record['source']}{note})")
    item.corrected_fields.add(field)


# ----------------------------------------------------------------------------------------------- policies
def _exclusion(c: Candidate, code: str, reason: str) -> Exclusion:
    return Exclusion(c.dataset, c.subject, c.clip, c.source, code, f"{c.source}: {reason}")


def _sample_id(c: Candidate) -> str:
    return f"{c.dataset}/{c.subject}/{c.clip}"


def _nearest_present(target: int, present: Sequence[int]) -> int:
    """The present frame number closest to ``target`` (the lower one on a tie)."""
    return min(present, key=lambda n: (abs(n - target), n))


def _subject_key_of(fold_subject: str) -> tuple[str, str]:
    """``casme2/sub18`` -> (``casme2``, loose subject key), matched like the corrections table's subjects."""
    dataset, _, subject = fold_subject.partition("/")
    return dataset, _subject_key(subject)


def excluded_subject(c: Candidate, exclude_subjects: Mapping[str, str]) -> str | None:
    """The ``exclude_subjects`` entry (``casme2/sub18``) that names the Candidate's subject, or None."""
    for name in exclude_subjects:
        if _subject_key_of(name) == (c.dataset, _subject_key(c.subject)):
            return name
    return None


def _subject_exclusion(c: Candidate, name: str, why: str) -> Exclusion:
    return _exclusion(
        c, "subject_excluded", f"subject {name} is excluded by ingest option exclude_subjects: {why}"
    )


def _warn_unused_subject_exclusions(
    exclude_subjects: Mapping[str, str], used: set[str], datasets_in_run: set[str]
) -> None:
    """An ``exclude_subjects`` entry for a dataset of this run that matched no sample is probably mistyped."""
    for name in exclude_subjects:
        if name not in used and name.partition("/")[0] in datasets_in_run:
            logger.warning(
                "ingest option exclude_subjects lists %s, which matches no sample of this run", name
            )


def _describe_shape(shape: tuple[int, int, int]) -> str:
    height, width, channels = shape
    return f"{width}x{height} {'greyscale' if channels == 1 else 'colour'}"


def odd_frame(frames: Sequence[tuple[int, Any]]) -> str | None:
    """None when every frame with a known header shape shares the first one's size and channels; else the path
    of the first frame that differs and how (for the ``mixed_frame_geometry`` reason)."""
    known = [f for _, f in frames if getattr(f, "shape", None) is not None]
    if not known:
        return None
    first = known[0]
    for f in known[1:]:
        if tuple(f.shape) != tuple(first.shape):
            return (f"{f.relpath} is {_describe_shape(f.shape)} but {posixpath.basename(first.relpath)} is "
                    f"{_describe_shape(first.shape)}: frames of a clip must share size and channels")
    return None


def _apply_policies(
    item: CorrectedCandidate,
    root: str,
    opts: Mapping[str, Any],
    label_set: LabelSet,
    composite: str | None = None,
) -> dict[str, Any] | Exclusion:
    """One Candidate -> one index row (dict) or one Exclusion; raises only for ``on_corrupt_frame: error``.

    ``composite``: the composite dataset (megc2019) whose rule labels the sample; None labels it by its own dataset.
    """
    c = item.candidate
    notes = list(c.notes)
    if c.clip_dir is None:
        problem = c.clip_dir_problem or "clip folder not found"
        code = "path_escapes_root" if problem.startswith("path escapes") else "clip_dir_missing"
        return _exclusion(c, code, problem)
    if c.onset is None or c.offset is None:
        detail = f" ({'; '.join(notes)})" if notes else ""
        return _exclusion(
            c, "missing_onset_offset", f"onset={c.onset} offset={c.offset}: both are required{detail}"
        )
    if c.onset > c.offset:
        return _exclusion(c, "onset_after_offset", f"onset {c.onset} is after offset {c.offset}")

    if composite is None:
        assignment = label_set.assign(c.dataset, c.emotion_raw, ground_truth=c.label_override)
    else:
        assignment = label_set.assign(
            composite, c.emotion_raw, ground_truth=c.label_override, compare_with=c.dataset
        )
    if assignment.label is None:
        return _exclusion(c, assignment.reason_code or "unlabelled", assignment.reason or "no label")
    if getattr(assignment, "note", None):
        notes.append(str(assignment.note))

    in_range = [(n, f) for n, f in c.frames if c.onset <= n <= c.offset]
    present = [n for n, _ in in_range]
    if not in_range:
        have = f"{c.frames[0][0]}..{c.frames[-1][0]}" if c.frames else "none"
        return _exclusion(
            c,
            "no_frames_in_range",
            f"no frame of {c.clip_dir} lies in onset..offset {c.onset}..{c.offset} (frames: {have})",
        )

    if c.apex is None:
        policy = opts["missing_apex_by_dataset"].get(c.dataset, opts["missing_apex"])
        if policy == "exclude":
            return _exclusion(
                c,
                "missing_apex",
                "no apex annotated; protocols that use the apex frame need it (missing_apex: exclude)",
            )
        middle = (c.onset + c.offset) // 2
        apex = _nearest_present(middle, present)
        apex_source = "midpoint"
        if apex != middle:
            notes.append(f"midpoint frame {middle} is missing; apex set to the nearest present frame {apex}")
    else:
        apex = c.apex
        apex_source = "corrected" if "apex" in item.corrected_fields else "annotated"
        if not c.onset <= apex <= c.offset:
            return _exclusion(
                c, "apex_outside_range", f"apex {apex} lies outside onset..offset {c.onset}..{c.offset}"
            )

    repeated = sorted(n for n, k in Counter(present).items() if k > 1)
    if repeated:
        names = [f.relpath for n, f in in_range if n == repeated[0]]
        return _exclusion(
            c, "duplicate_frame_number", f"frame number {repeated[0]} is carried by {', '.join(names)}"
        )
    corrupt = [f for _, f in in_range if f.problem]
    if corrupt:
        listed = "; ".join(f"{root}/{f.relpath}: {f.problem}" for f in corrupt)
        if opts["on_corrupt_frame"] == "error":
            raise CorruptFrameError(f"sample {_sample_id(c)} ({c.source}): corrupt frame(s) {listed}")
        return _exclusion(c, "corrupt_frame", f"corrupt frame(s) {listed}")
    missing = sorted(set(range(c.onset, c.offset + 1)) - set(present))
    if missing:
        if opts["missing_frames"] == "exclude":
            return _exclusion(
                c, "missing_frames", f"{len(missing)} frame(s) missing in onset..offset: {missing[:10]}"
            )
        if c.onset in missing:
            return _exclusion(c, "onset_frame_missing", f"the onset frame {c.onset} is not in {c.clip_dir}")
        if apex in missing:
            return _exclusion(c, "apex_frame_missing", f"the apex frame {apex} is not in {c.clip_dir}")
    if len(in_range) < opts["min_frames"]:
        return _exclusion(c, "too_short", f"{len(in_range)} frame(s) in onset..offset {c.onset}..{c.offset}, fewer "
                          f"than min_frames={opts['min_frames']}: no motion to measure")
    odd = odd_frame(in_range)
    if odd is not None:
        return _exclusion(c, "mixed_frame_geometry", f"{root}/{odd}")

    parsed = parse_au_string(c.au_raw)
    return {
        "sample_id": _sample_id(c),
        "dataset": c.dataset,
        "subject": c.subject,
        "clip": c.clip,
        "fold_subject": c.fold_subject,
        "root": root,
        "clip_dir": c.clip_dir,
        "frame_paths": [f.relpath for _, f in in_range],
        "frame_numbers": present,
        "n_frames": len(in_range),
        "missing_frames": missing,
        "onset": c.onset,
        "apex": apex,
        "offset": c.offset,
        "apex_source": apex_source,
        "fps": float(c.fps),
        "au_raw": c.au_raw,
        "aus": list(parsed.canonical),
        "au_codes": list(parsed.codes),
        "au_unparsed": list(parsed.unparsed),
        "emotion_raw": c.emotion_raw,
        "emotion": assignment.emotion or normalise_emotion(c.emotion_raw),
        "objective_class": c.objective_class,
        "label_set": label_set.name,
        "label": assignment.label,
        "label_id": int(assignment.label_id),
        "annotation_file": c.annotation_file,
        "annotation_row": c.annotation_row,
        "corrections": list(item.corrections),
        "notes": notes,
    }


# ----------------------------------------------------------------------------------------------- tables
def _index_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with fixed column order and parquet-friendly dtypes, sorted deterministically."""
    frame = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    for col in ("onset", "apex", "offset", "n_frames", "label_id"):
        frame[col] = frame[col].astype("int64")
    frame["annotation_row"] = frame["annotation_row"].astype("Int64")
    frame["fps"] = frame["fps"].astype("float64")
    for col in (
        "sample_id",
        "dataset",
        "subject",
        "clip",
        "fold_subject",
        "root",
        "clip_dir",
        "apex_source",
        "au_raw",
        "emotion_raw",
        "emotion",
        "objective_class",
        "label_set",
        "label",
        "annotation_file",
    ):
        frame[col] = frame[col].astype("string")
    frame = frame.sort_values(["dataset", "fold_subject", "clip"], kind="stable").reset_index(drop=True)
    return frame


def exclusions_frame(exclusions: Sequence[Exclusion]) -> pd.DataFrame:
    """Exclusions -> DataFrame with ``EXCLUSION_COLUMNS``, sorted by dataset, subject, clip, reason."""
    frame = pd.DataFrame([dataclasses.astuple(e) for e in exclusions], columns=list(EXCLUSION_COLUMNS))
    frame = frame.astype("string")
    return frame.sort_values(
        ["dataset", "subject", "clip", "reason_code", "source"], kind="stable"
    ).reset_index(drop=True)


def _root_of(snapshot: Snapshot, dataset: str) -> str:
    return snapshot.parts[dataset].root if dataset in snapshot.parts else snapshot.root


def _log_summary(index: pd.DataFrame, excluded: Sequence[Exclusion], dataset: str, label_set: str) -> None:
    codes = Counter(e.reason_code for e in excluded)
    logger.info(
        "sample index for %s under label set %s: %d kept, %d excluded (%s)",
        dataset,
        label_set,
        len(index),
        len(excluded),
        ", ".join(f"{k} {v}" for k, v in sorted(codes.items())) or "none",
    )
    with_unparsed = index[index["au_unparsed"].map(len) > 0] if len(index) else index
    if len(with_unparsed):
        tokens = Counter(t for toks in with_unparsed["au_unparsed"] for t in toks)
        logger.warning(
            "%d sample(s) have AU tokens the parser could not read (kept in column au_unparsed): %s",
            len(with_unparsed),
            ", ".join(f"{t!r}x{n}" for t, n in tokens.most_common(10)),
        )


def label_exclusion_counts(excluded: Sequence[Exclusion]) -> Counter:
    """Exclusions made by the label set, per reason code."""
    return Counter(e.reason_code for e in excluded if e.reason_code in LABEL_REASON_CODES)


def label_exclusion_warning(
    label_counts: Mapping[str, int],
    emotions: Mapping[str, int],
    reached: int,
    threshold: float,
    dataset: str,
    label_set: str,
) -> str | None:
    """The WARNING text when the label set excluded more than ``threshold`` of the ``reached`` samples (those that
    got to the label check), with per-reason counts and the dropped/unknown emotions; None at or below it."""
    n_excluded = sum(label_counts.values())
    if reached == 0 or n_excluded / reached <= threshold:
        return None
    reasons = ", ".join(
        f"{code} {n}" for code, n in sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    by_emotion = ", ".join(
        f"{e or '(none)'} {n}" for e, n in sorted(emotions.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return (
        f"label set {label_set} excluded {n_excluded} of the {reached} {dataset} samples it had to label "
        f"({n_excluded / reached:.0%}, above warn_label_excluded_fraction {threshold:.0%}): {reasons}"
        + (f"; excluded emotions: {by_emotion}" if by_emotion else "")
        + ". Check that this label set is the protocol you meant (docs/datasets.md#label-sets)."
    )


def build_sample_index(
    snapshot: Snapshot,
    label_sets_cfg: Mapping[str, Any],
    label_set: str | None,
    corrections: pd.DataFrame | None,
    options: Mapping[str, Any] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample index and exclusions of one raw dataset (or composite) under one label set.

    ``label_set`` None uses the dataset's default (labels.yml ``defaults``). Every raw sample the parser saw ends
    in exactly one of the two tables (asserted for the builder's part: ``len(candidates) == len(index) + len(new
    exclusions)``). Raises LabelSetMismatch for a label set that cannot label the dataset, CorruptFrameError under
    ``on_corrupt_frame: error``, ValueError for bad options/corrections/label set, RawDataError for unreadable data.
    """
    opts = resolve_options(options)
    name = resolve_label_set(label_sets_cfg, snapshot.dataset, label_set)
    chosen = load_label_sets(label_sets_cfg)[name]
    logger.info(
        "label set %s for dataset %s%s", name, snapshot.dataset, "" if label_set else " (its default)"
    )
    spec = get_source(snapshot.dataset)
    composite = snapshot.dataset if spec.parts else None
    candidates, parsed_out = spec.parser()(snapshot, {**spec.options, **opts["reader"]})
    datasets_in_run = {c.dataset for c in candidates} | {e.dataset for e in parsed_out} | {snapshot.dataset}
    corrected = apply_corrections(candidates, corrections, datasets_in_run)

    rows: list[dict[str, Any]] = []
    excluded: list[Exclusion] = []
    first_source: dict[tuple[str, str, str], str] = {}
    subjects_used: set[str] = set()
    label_emotions: Counter = Counter()
    for item in corrected:
        c = item.candidate
        if c.key in first_source:
            excluded.append(
                _exclusion(c, "duplicate", f"sample {_sample_id(c)} already read from {first_source[c.key]}")
            )
            continue
        first_source[c.key] = c.source
        subject = excluded_subject(c, opts["exclude_subjects"])
        if subject is not None:
            subjects_used.add(subject)
            excluded.append(_subject_exclusion(c, subject, opts["exclude_subjects"][subject]))
            continue
        result = _apply_policies(item, _root_of(snapshot, c.dataset), opts, chosen, composite)
        if isinstance(result, Exclusion):
            excluded.append(result)
            if result.reason_code in (REASON_LABEL_DROPPED, REASON_UNKNOWN_EMOTION):
                label_emotions[normalise_emotion(c.emotion_raw)] += 1
        else:
            rows.append(result)
    assert len(candidates) == len(rows) + len(excluded), (
        "every candidate must give one index row or one exclusion"
    )
    _warn_unused_subject_exclusions(opts["exclude_subjects"], subjects_used, datasets_in_run)

    index = _index_frame(rows)
    _log_summary(index, [*parsed_out, *excluded], snapshot.dataset, name)
    reached = sum(1 for e in excluded if e.reason_code not in _BEFORE_LABEL_CODES) + len(rows)
    warning = label_exclusion_warning(
        label_exclusion_counts(excluded),
        label_emotions,
        reached,
        opts["warn_label_excluded_fraction"],
        snapshot.dataset,
        name,
    )
    if warning:
        logger.warning(warning)
    return index, exclusions_frame([*parsed_out, *excluded])


__all__ = [
    "BUILDER_REASON_CODES",
    "CORRECTABLE_FIELDS",
    "CORRECTION_COLUMNS",
    "DEFAULT_OPTIONS",
    "INDEX_COLUMNS",
    "CorrectedCandidate",
    "CorruptFrameError",
    "apply_corrections",
    "build_sample_index",
    "excluded_subject",
    "exclusions_frame",
    "label_exclusion_counts",
    "label_exclusion_warning",
    "resolve_options",
    "validate_corrections",
]
