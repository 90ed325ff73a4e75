"""Label maps (data in conf/base/labels.yml) -> the label of a sample under a chosen label set.

Contract used by the index builder:
    normalise_emotion(raw) -> str                      "Others"/"other"/"Other " -> "others", "happy" -> "happiness"
    LabelSet.from_config(name, cfg) / load_label_sets(cfg: dict) -> dict[str, LabelSet]
    LabelSet.classes -> tuple[str, ...]                 class order = label_id (sets with one shared class list)
    LabelSet.classes_for(dataset) -> tuple[str, ...]    class order for one dataset (always works)
    LabelSet.assign(dataset, emotion_raw, ground_truth=None) -> Assignment(label, label_id, reason_code, reason)

YAML schema of one label set (``label_sets: {<name>: ...}``)::

    description: str                      required
    source: str                           optional: where the protocol comes from
    classes: [c0, c1, ...]                shared class list (label_id = position); optional when every dataset
                                          has its own ``classes`` (e.g. emotion5: CASME II and SAMM differ)
    ground_truth_codes: {0: c0, ...}      optional: how integer codes of a ground-truth file decode to classes
    datasets:
      <dataset>:
        classes: [...]                    optional per-dataset class list (overrides the shared one)
        keep: [emotion, ...]              emotions that are their own class
        map: {emotion: class, ...}        emotions renamed or merged into a class
        drop: [emotion, ...]              REQUIRED (may be []): emotions excluded from this set, listed explicitly
        note: str                         optional free text
      <alias>: {same_as: <dataset>}       same rule as another dataset of this set (synthetic -> casme2)
      <composite>: {from_ground_truth: true}   the label must come from a ground-truth file (megc2019)

Ground truth: ``assign(..., ground_truth=g)`` with ``g`` not None labels the sample from ``g`` (an integer code
decoded through ``ground_truth_codes``, or a class name) for *any* dataset of the set - so the MEGC2019 composite
works whether its rows carry ``megc2019`` or their member dataset (``casme2``, ``samm``, ``smic_hs``). The
emotion cell is then only compared with it: ``Assignment.note`` says when the emotion map would disagree. A
``from_ground_truth`` dataset without ``g`` is ``missing_ground_truth``.

Emotion keys must be written in ``normalise_emotion`` form. Validation rejects: unknown keys, map targets that are
not classes, an emotion both kept/mapped and dropped, a class no emotion (or code) produces, aliases of aliases.
Every error names the label set, the dataset and the key.

Reason codes of a non-labelled ``Assignment``: ``label_dropped``, ``unknown_emotion`` (neither mapped nor dropped:
reported, never guessed), ``missing_emotion``, ``dataset_not_in_label_set``, ``missing_ground_truth``,
``unknown_ground_truth``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pandas as pd

REASON_LABEL_DROPPED = "label_dropped"
REASON_UNKNOWN_EMOTION = "unknown_emotion"
REASON_MISSING_EMOTION = "missing_emotion"
REASON_DATASET_NOT_IN_LABEL_SET = "dataset_not_in_label_set"
REASON_MISSING_GROUND_TRUTH = "missing_ground_truth"
REASON_UNKNOWN_GROUND_TRUTH = "unknown_ground_truth"

# Spellings seen across the datasets (CASME II lower case, SAMM capitalised "Other", CAS(ME)^3 "happy"/"sad",
# SMIC folder names and clip-name codes) -> one canonical word. Anything else is only lower-cased and trimmed.
_EMOTION_SPELLINGS: dict[str, str] = {
    "other": "others",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
    "disgusted": "disgust",
    "angry": "anger",
    "fearful": "fear",
    "repressed": "repression",
    "contemptuous": "contempt",
    "ne": "negative",
    "po": "positive",
    "sur": "surprise",
}

_SET_KEYS = frozenset({"description", "source", "classes", "ground_truth_codes", "datasets"})
_RULE_KEYS = frozenset({"classes", "keep", "map", "drop", "note"})
_GROUND_TRUTH_RULE_KEYS = frozenset({"classes", "from_ground_truth", "note"})
_ALIAS_KEYS = frozenset({"same_as", "note"})


class LabelConfigError(ValueError):
    """labels.yml (or the dict given to load_label_sets) is malformed; the message names set, dataset and key."""


def normalise_emotion(raw: object) -> str:
    """Case, whitespace and spelling normalisation of a raw emotion cell; None/NaN/empty -> ""."""
    if _is_missing(raw):
        return ""
    text = " ".join(str(raw).split()).lower()
    if text == "nan":
        return ""
    return _EMOTION_SPELLINGS.get(text, text)


@dataclass(frozen=True)
class Assignment:
    """Label of one sample under one label set; ``label`` is None when excluded, with a code and a sentence."""

    label: str | None
    label_id: int | None
    reason_code: str | None
    reason: str | None
    emotion: str = ""  # the normalised emotion cell ("" when none)
    note: str | None = None  # set when a ground-truth label disagrees with what the emotion map would give

    @property
    def ok(self) -> bool:
        return self.label is not None


@dataclass(frozen=True)
class DatasetRule:
    """How one dataset's emotions become classes under one label set (aliases already resolved)."""

    dataset: str
    classes: tuple[str, ...]
    mapping: Mapping[str, str] = field(default_factory=dict)  # normalised emotion -> class
    dropped: tuple[str, ...] = ()
    from_ground_truth: bool = False
    alias_of: str | None = None

    def describe(self) -> str:
        return self.dataset if self.alias_of is None else f"{self.dataset} (same as {self.alias_of})"


@dataclass(frozen=True)
class LabelSet:
    """A named protocol: per dataset, which raw emotions become which class and which are dropped."""

    name: str
    description: str
    rules: Mapping[str, DatasetRule]
    source: str = ""
    ground_truth_codes: Mapping[str, str] = field(default_factory=dict)  # str(int code) -> class

    @classmethod
    def from_config(cls, name: str, cfg: object) -> LabelSet:
        """Validate one label-set mapping from labels.yml; raises LabelConfigError naming the set and key."""
        return _build_label_set(name, cfg)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(self.rules)

    @property
    def classes(self) -> tuple[str, ...]:
        """The class list shared by every dataset of the set; error when datasets have their own lists."""
        lists = {rule.classes for rule in self.rules.values()}
        if len(lists) != 1:
            per_dataset = "; ".join(f"{d}: {', '.join(r.classes)}" for d, r in self.rules.items())
            raise LabelConfigError(
                f"label set {self.name!r} has per-dataset class lists ({per_dataset}); use classes_for(dataset)"
            )
        return next(iter(lists))

    def supports(self, dataset: str) -> bool:
        return dataset in self.rules

    def rule(self, dataset: str) -> DatasetRule:
        if dataset not in self.rules:
            raise KeyError(
                f"dataset {dataset!r} is not in label set {self.name!r} (datasets: {', '.join(self.rules)})"
            )
        return self.rules[dataset]

    def classes_for(self, dataset: str) -> tuple[str, ...]:
        return self.rule(dataset).classes

    def dropped_for(self, dataset: str) -> tuple[str, ...]:
        return self.rule(dataset).dropped

    def assign(self, dataset: str, emotion_raw: object, ground_truth: object = None) -> Assignment:
        """Label of one sample: from ``ground_truth`` when given (see module docstring), else from the emotion."""
        if dataset not in self.rules:
            return Assignment(
                None,
                None,
                REASON_DATASET_NOT_IN_LABEL_SET,
                f"dataset {dataset!r} is not covered by label set {self.name} (datasets: {', '.join(self.rules)})",
                normalise_emotion(emotion_raw),
            )
        rule = self.rules[dataset]
        from_emotion = self._assign_from_emotion(rule, emotion_raw)
        if not _is_missing(ground_truth):
            return self._assign_from_ground_truth(rule, ground_truth, from_emotion)
        if rule.from_ground_truth:
            return Assignment(
                None,
                None,
                REASON_MISSING_GROUND_TRUTH,
                f"no ground-truth label given; {self._where(rule)} takes it from the ground-truth file",
                from_emotion.emotion,
            )
        return from_emotion

    def _where(self, rule: DatasetRule) -> str:
        return f"label set {self.name} for dataset {rule.describe()}"

    def _assign_from_emotion(self, rule: DatasetRule, emotion_raw: object) -> Assignment:
        emotion = normalise_emotion(emotion_raw)
        if not emotion:
            return Assignment(
                None, None, REASON_MISSING_EMOTION, f"no emotion given ({emotion_raw!r}); {self._where(rule)}"
            )
        if emotion in rule.mapping:
            label = rule.mapping[emotion]
            return Assignment(label, rule.classes.index(label), None, None, emotion)
        if emotion in rule.dropped:
            return Assignment(
                None,
                None,
                REASON_LABEL_DROPPED,
                f"emotion {emotion!r} is dropped by {self._where(rule)} (dropped: {', '.join(rule.dropped)})",
                emotion,
            )
        mapped = ", ".join(rule.mapping) or "none (labels come from ground truth)"
        return Assignment(
            None,
            None,
            REASON_UNKNOWN_EMOTION,
            f"emotion {emotion!r} (raw {emotion_raw!r}) is neither mapped nor dropped by {self._where(rule)}"
            f" (mapped: {mapped}; dropped: {', '.join(rule.dropped) or 'none'})",
            emotion,
        )

    def _assign_from_ground_truth(
        self, rule: DatasetRule, ground_truth: object, from_emotion: Assignment
    ) -> Assignment:
        label = self._ground_truth_class(ground_truth, rule.classes)
        if label is None:
            codes = ", ".join(f"{k}={v}" for k, v in self.ground_truth_codes.items()) or "none"
            return Assignment(
                None,
                None,
                REASON_UNKNOWN_GROUND_TRUTH,
                f"ground-truth label {ground_truth!r} is neither a code ({codes}) nor a class"
                f" ({', '.join(rule.classes)}) of {self._where(rule)}",
                from_emotion.emotion,
            )
        note = None
        if rule.mapping and from_emotion.label != label:
            by_emotion = from_emotion.label or f"{from_emotion.reason_code}"
            note = (
                f"ground truth says {label!r}; the emotion cell {from_emotion.emotion!r} would give {by_emotion!r}"
                f" under {self._where(rule)}"
            )
        return Assignment(label, rule.classes.index(label), None, None, from_emotion.emotion, note)

    def _ground_truth_class(self, ground_truth: object, classes: tuple[str, ...]) -> str | None:
        """An int-like code (0, "0", 0.0) through ground_truth_codes, or a class name as written in the GT file."""
        text = str(ground_truth).strip()
        if isinstance(ground_truth, float) and ground_truth.is_integer():
            text = str(int(ground_truth))
        label = self.ground_truth_codes.get(text, normalise_emotion(text))
        return label if label in classes else None


def load_label_sets(cfg: object) -> dict[str, LabelSet]:
    """Validate the whole labels.yml content (``{"label_sets": {...}}``, or the inner mapping) into LabelSets."""
    if isinstance(cfg, Mapping) and "label_sets" in cfg:
        extra = set(cfg) - {"label_sets"}
        if extra:
            raise LabelConfigError(
                f"labels.yml: unexpected top-level keys {sorted(extra)} next to 'label_sets'"
            )
        cfg = cfg["label_sets"]
    if not isinstance(cfg, Mapping) or not cfg:
        raise LabelConfigError(f"labels.yml: 'label_sets' must be a non-empty mapping, got {cfg!r:.80}")
    return {str(name): LabelSet.from_config(str(name), set_cfg) for name, set_cfg in cfg.items()}


def _is_missing(value: object) -> bool:
    """None, NaN, pandas NA/NaT or a blank string."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value)) if pd.api.types.is_scalar(value) else False
    except (TypeError, ValueError):
        return False


def _fail(set_name: str, dataset: str | None, key: str, problem: str) -> LabelConfigError:
    where = f"label set {set_name!r}" + (f", dataset {dataset!r}" if dataset else "") + f", key {key!r}"
    return LabelConfigError(f"labels.yml: {where}: {problem}")


def _check_keys(cfg: Mapping, allowed: frozenset[str], set_name: str, dataset: str | None, what: str) -> None:
    unknown = sorted(str(k) for k in set(cfg) - allowed)
    if unknown:
        raise _fail(
            set_name, dataset, unknown[0], f"not allowed in {what} (allowed: {', '.join(sorted(allowed))})"
        )


def _string_list(value: object, set_name: str, dataset: str | None, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(set_name, dataset, key, f"must be a list of non-empty strings, got {value!r}")
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        raise _fail(set_name, dataset, key, f"duplicate entries {duplicates}")
    return tuple(value)


def _emotion_key(emotion: str, set_name: str, dataset: str, key: str) -> str:
    if normalise_emotion(emotion) != emotion:
        raise _fail(
            set_name, dataset, key, f"emotion {emotion!r} must be written as {normalise_emotion(emotion)!r}"
        )
    return emotion


def _build_label_set(name: str, cfg: object) -> LabelSet:
    if not isinstance(cfg, Mapping):
        raise _fail(name, None, "(set)", f"must be a mapping, got {type(cfg).__name__}")
    _check_keys(cfg, _SET_KEYS, name, None, "a label set")
    description = cfg.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _fail(name, None, "description", "a non-empty description is required")
    shared = _string_list(cfg["classes"], name, None, "classes") if "classes" in cfg else None
    codes = _ground_truth_codes(name, cfg.get("ground_truth_codes", {}))
    datasets = cfg.get("datasets")
    if not isinstance(datasets, Mapping) or not datasets:
        raise _fail(name, None, "datasets", "must be a non-empty mapping of dataset name -> rule")
    rules: dict[str, DatasetRule] = {}
    aliases: dict[str, str] = {}
    for dataset, rule_cfg in datasets.items():
        dataset = str(dataset)
        if isinstance(rule_cfg, Mapping) and "same_as" in rule_cfg:
            aliases[dataset] = _alias_target(name, dataset, rule_cfg)
        else:
            rules[dataset] = _build_rule(name, dataset, rule_cfg, shared, codes)
    for dataset, target in aliases.items():
        if target not in rules:
            problem = "is itself an alias" if target in aliases else "is not a dataset of this set"
            raise _fail(name, dataset, "same_as", f"target {target!r} {problem}")
    resolved = {}
    for dataset in map(str, datasets):
        target = aliases.get(dataset)
        resolved[dataset] = (
            rules[dataset] if target is None else replace(rules[target], dataset=dataset, alias_of=target)
        )
    return LabelSet(
        name=name,
        description=description.strip(),
        rules=resolved,
        source=str(cfg.get("source", "")),
        ground_truth_codes=codes,
    )


def _ground_truth_codes(set_name: str, codes_cfg: object) -> dict[str, str]:
    if not isinstance(codes_cfg, Mapping):
        raise _fail(
            set_name, None, "ground_truth_codes", f"must be a mapping code -> class, got {codes_cfg!r}"
        )
    codes: dict[str, str] = {}
    for code, target in codes_cfg.items():
        if isinstance(code, bool) or not str(code).lstrip("-").isdigit():
            raise _fail(set_name, None, "ground_truth_codes", f"code {code!r} is not an integer")
        codes[str(int(code))] = str(target)
    return codes


def _alias_target(set_name: str, dataset: str, rule_cfg: Mapping) -> str:
    _check_keys(rule_cfg, _ALIAS_KEYS, set_name, dataset, "an alias (same_as)")
    target = rule_cfg["same_as"]
    if not isinstance(target, str) or target == dataset:
        raise _fail(set_name, dataset, "same_as", f"must name another dataset of the set, got {target!r}")
    return target


def _build_rule(
    set_name: str, dataset: str, cfg: object, shared: tuple[str, ...] | None, codes: Mapping[str, str]
) -> DatasetRule:
    if not isinstance(cfg, Mapping):
        raise _fail(set_name, dataset, "(rule)", f"must be a mapping, got {type(cfg).__name__}")
    classes = _string_list(cfg["classes"], set_name, dataset, "classes") if "classes" in cfg else shared
    if classes is None:
        raise _fail(
            set_name, dataset, "classes", "no class list: give 'classes' for the set or for this dataset"
        )
    if "from_ground_truth" in cfg:
        return _build_ground_truth_rule(set_name, dataset, cfg, classes, codes)
    _check_keys(cfg, _RULE_KEYS, set_name, dataset, "a dataset rule")
    if "drop" not in cfg:
        raise _fail(
            set_name, dataset, "drop", "required: list the dropped emotions explicitly (use [] for none)"
        )
    dropped = tuple(
        _emotion_key(e, set_name, dataset, "drop")
        for e in _string_list(cfg["drop"], set_name, dataset, "drop")
    )
    mapping: dict[str, str] = {}
    for emotion in _string_list(cfg.get("keep", []), set_name, dataset, "keep"):
        mapping[_emotion_key(emotion, set_name, dataset, "keep")] = emotion
    map_cfg = cfg.get("map", {})
    if not isinstance(map_cfg, Mapping):
        raise _fail(set_name, dataset, "map", f"must be a mapping emotion -> class, got {map_cfg!r}")
    for emotion, target in map_cfg.items():
        emotion = _emotion_key(str(emotion), set_name, dataset, "map")
        if emotion in mapping:
            raise _fail(set_name, dataset, "map", f"emotion {emotion!r} is also listed in 'keep'")
        mapping[emotion] = str(target)
    if not mapping:
        raise _fail(set_name, dataset, "keep", "no emotion is kept or mapped")
    for emotion, target in mapping.items():
        if target not in classes:
            key = "map" if emotion in map_cfg else "keep"
            raise _fail(
                set_name, dataset, key, f"target class {target!r} of {emotion!r} is not in {list(classes)}"
            )
    both = sorted(set(mapping) & set(dropped))
    if both:
        raise _fail(set_name, dataset, "drop", f"emotion {both[0]!r} is both mapped and dropped")
    _check_reachable(set_name, dataset, classes, set(mapping.values()), "keep")
    return DatasetRule(dataset=dataset, classes=classes, mapping=mapping, dropped=dropped)


def _build_ground_truth_rule(
    set_name: str, dataset: str, cfg: Mapping, classes: tuple[str, ...], codes: Mapping[str, str]
) -> DatasetRule:
    _check_keys(cfg, _GROUND_TRUTH_RULE_KEYS, set_name, dataset, "a from_ground_truth rule")
    if cfg["from_ground_truth"] is not True:
        raise _fail(
            set_name,
            dataset,
            "from_ground_truth",
            f"must be true or absent, got {cfg['from_ground_truth']!r}",
        )
    if not codes:
        raise _fail(
            set_name, dataset, "from_ground_truth", "needs the set's 'ground_truth_codes' (code -> class)"
        )
    outside = sorted(target for target in codes.values() if target not in classes)
    if outside:
        raise _fail(set_name, dataset, "ground_truth_codes", f"classes {outside} are not in {list(classes)}")
    _check_reachable(set_name, dataset, classes, set(codes.values()), "ground_truth_codes")
    return DatasetRule(dataset=dataset, classes=classes, from_ground_truth=True)


def _check_reachable(
    set_name: str, dataset: str, classes: tuple[str, ...], produced: set[str], key: str
) -> None:
    unreachable = [c for c in classes if c not in produced]
    if unreachable:
        raise _fail(
            set_name, dataset, key, f"classes {unreachable} are produced by no emotion of this dataset"
        )
