"""Label maps (data in conf/base/labels.yml) -> the label of a sample under a chosen label set.

Contract used by the index builder:
    normalise_emotion(raw) -> str                      "Others"/"other"/"Other " -> "others", "happy" -> "happiness"
    LabelSet.from_config(name, cfg) / load_label_sets(cfg: dict) -> dict[str, LabelSet]
    LabelSet.classes -> tuple[str, ...]                 class order = label_id (sets with one shared class list)
    LabelSet.classes_for(dataset) -> tuple[str, ...]    class order for one dataset (always works)
    LabelSet.assign(dataset, emotion_raw, ground_truth=None, compare_with=None)
        -> Assignment(label, label_id, reason_code, reason)
    default_label_sets(cfg) -> dict[str, str]           dataset -> its natural label set (``defaults:`` below)
    applicable_label_sets(sets, dataset) -> tuple[str, ...]   the label sets with a rule for the dataset
    resolve_label_set(cfg, dataset, requested) -> str   requested (checked) or the dataset's default

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
decoded through ``ground_truth_codes``, or a class name) for any dataset of the set. The emotion cell is then only
compared with it: ``Assignment.note`` says when the emotion map would disagree. A ``from_ground_truth`` dataset
without ``g`` is ``missing_ground_truth``. A composite's samples keep their member's ``dataset`` but are labelled
under the *composite's* rule (the index builder calls ``assign("megc2019", ..., compare_with="casme2")``), so a
label set labels a composite exactly when it has a rule for it; ``compare_with`` names the member whose emotion
rule the note compares with (only when that rule has the same class list).

Defaults (top-level ``defaults: {<dataset>: <label set>}`` next to ``label_sets``): the label set a dataset uses
when none is requested. Each must name a defined set with a rule for that dataset. ``resolve_label_set`` returns the
requested set after checking it has a rule for the dataset; otherwise it raises :class:`LabelSetMismatch` naming
the dataset, the set and the sets that would work (the default first).

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
from typing import Any

import pandas as pd

REASON_LABEL_DROPPED = "label_dropped"
REASON_UNKNOWN_EMOTION = "unknown_emotion"
REASON_MISSING_EMOTION = "missing_emotion"
REASON_DATASET_NOT_IN_LABEL_SET = "dataset_not_in_label_set"
REASON_MISSING_GROUND_TRUTH = "missing_ground_truth"
REASON_UNKNOWN_GROUND_TRUTH = "unknown_ground_truth"
# Every exclusion a label set makes (the index builder counts them against ``warn_label_excluded_fraction``).
LABEL_REASON_CODES: tuple[str, ...] = (
    REASON_LABEL_DROPPED,
    REASON_UNKNOWN_EMOTION,
    REASON_MISSING_EMOTION,
    REASON_DATASET_NOT_IN_LABEL_SET,
    REASON_MISSING_GROUND_TRUTH,
    REASON_UNKNOWN_GROUND_TRUTH,
)

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


class LabelSetMismatch(ValueError):
    """The requested label set cannot label the dataset (no rule for it), or the dataset has no default."""


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

    def assign(
        self, dataset: str, emotion_raw: object, ground_truth: object = None, compare_with: str | None = None
    ) -> Assignment:
        """Label of one sample: from ``ground_truth`` when given (see module docstring), else from the emotion.

        ``compare_with``: the dataset whose emotion rule a ground-truth label is compared with for the note (a
        composite's member); default the dataset itself.
        """
        if dataset not in self.rules:
            return Assignment(
                None,
                None,
                REASON_DATASET_NOT_IN_LABEL_SET,
                f"dataset {dataset!r} is not covered by label set {self.name} (datasets: {', '.join(self.rules)})",
                normalise_emotion(emotion_raw),
            )
        rule = self.rules[dataset]
        if not _is_missing(ground_truth):
            checked = self._comparable_rule(rule, compare_with)
            by_emotion = self._assign_from_emotion(checked, emotion_raw) if checked else None
            return self._assign_from_ground_truth(rule, ground_truth, emotion_raw, by_emotion, checked)
        if rule.from_ground_truth:
            return Assignment(
                None,
                None,
                REASON_MISSING_GROUND_TRUTH,
                f"no ground-truth label given; {self._where(rule)} takes it from the ground-truth file",
                normalise_emotion(emotion_raw),
            )
        return self._assign_from_emotion(rule, emotion_raw)

    def _comparable_rule(self, rule: DatasetRule, compare_with: str | None) -> DatasetRule | None:
        """The emotion rule a ground-truth label can be checked against: same class list, with an emotion map."""
        other = self.rules.get(compare_with) if compare_with else rule
        if other is None or not other.mapping or other.classes != rule.classes:
            return None
        return other

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
        self,
        rule: DatasetRule,
        ground_truth: object,
        emotion_raw: object,
        by_emotion: Assignment | None,
        checked: DatasetRule | None,
    ) -> Assignment:
        emotion = normalise_emotion(emotion_raw)
        label = self._ground_truth_class(ground_truth, rule.classes)
        if label is None:
            codes = ", ".join(f"{k}={v}" for k, v in self.ground_truth_codes.items()) or "none"
            return Assignment(
                None,
                None,
                REASON_UNKNOWN_GROUND_TRUTH,
                f"ground-truth label {ground_truth!r} is neither a code ({codes}) nor a class"
                f" ({', '.join(rule.classes)}) of {self._where(rule)}",
                emotion,
            )
        note = None
        if by_emotion is not None and checked is not None and by_emotion.label != label:
            would = by_emotion.label or f"{by_emotion.reason_code}"
            note = (
                f"ground truth says {label!r}; the emotion cell {emotion!r} would give {would!r}"
                f" under {self._where(checked)}"
            )
        return Assignment(label, rule.classes.index(label), None, None, emotion, note)

    def _ground_truth_class(self, ground_truth: object, classes: tuple[str, ...]) -> str | None:
        """An int-like code (0, "0", 0.0) through ground_truth_codes, or a class name as written in the GT file."""
        text = str(ground_truth).strip()
        if isinstance(ground_truth, float) and ground_truth.is_integer():
            text = str(int(ground_truth))
        label = self.ground_truth_codes.get(text, normalise_emotion(text))
        return label if label in classes else None


_TOP_LEVEL_KEYS = frozenset({"label_sets", "defaults"})


def load_label_sets(cfg: object) -> dict[str, LabelSet]:
    """Validate the whole labels.yml content (``{"label_sets": {...}, "defaults": {...}}``, or the inner
    ``label_sets`` mapping) into LabelSets; the defaults are checked too when present."""
    if isinstance(cfg, Mapping) and "label_sets" in cfg:
        extra = set(cfg) - _TOP_LEVEL_KEYS
        if extra:
            raise LabelConfigError(
                f"labels.yml: unexpected top-level keys {sorted(extra)} next to 'label_sets'"
                f" (allowed: {', '.join(sorted(_TOP_LEVEL_KEYS))})"
            )
        sets = _load_sets(cfg["label_sets"])
        _check_defaults(cfg.get("defaults", {}), sets)
        return sets
    return _load_sets(cfg)


def _load_sets(cfg: object) -> dict[str, LabelSet]:
    if not isinstance(cfg, Mapping) or not cfg:
        raise LabelConfigError(f"labels.yml: 'label_sets' must be a non-empty mapping, got {cfg!r:.80}")
    return {str(name): LabelSet.from_config(str(name), set_cfg) for name, set_cfg in cfg.items()}


def _check_defaults(defaults: object, sets: Mapping[str, LabelSet]) -> dict[str, str]:
    """``defaults`` as {dataset: label set}; each set must exist and have a rule for its dataset."""
    if not isinstance(defaults, Mapping):
        raise LabelConfigError(
            f"labels.yml: 'defaults' must be a mapping dataset -> label set, got {defaults!r:.80}"
        )
    checked: dict[str, str] = {}
    for dataset, name in defaults.items():
        where = f"labels.yml: defaults, dataset {dataset!r}"
        if name not in sets:
            raise LabelConfigError(f"{where}: label set {name!r} is not defined (defined: {', '.join(sets)})")
        if not sets[name].supports(str(dataset)):
            raise LabelConfigError(
                f"{where}: label set {name!r} has no rule for {dataset!r} (it covers {', '.join(sets[name].datasets)})"
            )
        checked[str(dataset)] = str(name)
    return checked


def default_label_sets(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Dataset -> its natural label set, from the ``defaults`` of the whole labels.yml content (validated)."""
    return _defaults_of(cfg, load_label_sets(cfg))


def _defaults_of(cfg: Mapping[str, Any], sets: Mapping[str, LabelSet]) -> dict[str, str]:
    return _check_defaults(cfg.get("defaults", {}) if "label_sets" in cfg else {}, sets)


def applicable_label_sets(sets: Mapping[str, LabelSet], dataset: str) -> tuple[str, ...]:
    """Names of the label sets with a rule for ``dataset`` (a composite: a rule for the composite itself)."""
    return tuple(name for name, label_set in sets.items() if label_set.supports(dataset))


def resolve_label_set(cfg: Mapping[str, Any], dataset: str, requested: str | None) -> str:
    """The label set an ingest of ``dataset`` uses: ``requested`` when it can label the dataset, the dataset's
    default (labels.yml ``defaults``) when ``requested`` is None or blank.

    Raises LabelSetMismatch naming the dataset, the requested set and the sets that would work (default first),
    or ValueError for a set labels.yml does not define.
    """
    sets = load_label_sets(cfg)
    defaults = _defaults_of(cfg, sets)
    usable = _usable_description(sets, defaults, dataset)
    if requested is None or not str(requested).strip():
        if dataset not in defaults:
            raise LabelSetMismatch(
                f"dataset {dataset!r} has no default label set (labels.yml 'defaults'); set label_set to one of"
                f" {usable}"
            )
        return defaults[dataset]
    name = str(requested).strip()
    if name not in sets:
        raise ValueError(
            f"unknown label set {name!r}; labels.yml defines {', '.join(sets)}; for dataset {dataset!r} use {usable}"
        )
    if not sets[name].supports(dataset):
        raise LabelSetMismatch(
            f"label set {name!r} cannot label dataset {dataset!r}{_where_labels_come_from(sets, dataset)}: {name}"
            f" has no rule for it (it covers {', '.join(sets[name].datasets)}). Label sets that would work for"
            f" {dataset}: {usable}. Leave label_set unset (null) to use the default."
        )
    return name


def _usable_description(sets: Mapping[str, LabelSet], defaults: Mapping[str, str], dataset: str) -> str:
    """``megc3 (default), native``: the applicable sets, the dataset's default first; "none" when there are none."""
    usable = applicable_label_sets(sets, dataset)
    default = defaults.get(dataset)
    ordered = ([default] if default in usable else []) + [n for n in usable if n != default]
    return (
        ", ".join(f"{n} (default)" if n == default else n for n in ordered) or "none (labels.yml has no rule)"
    )


def _where_labels_come_from(sets: Mapping[str, LabelSet], dataset: str) -> str:
    """`` (its labels come from its ground-truth file: negative, positive, surprise)`` for a composite, else ""."""
    for label_set in sets.values():
        if label_set.supports(dataset) and label_set.rule(dataset).from_ground_truth:
            classes = ", ".join(label_set.rule(dataset).classes)
            return f" (its labels come from its ground-truth file: {classes})"
    return ""


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
