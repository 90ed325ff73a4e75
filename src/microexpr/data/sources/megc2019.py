"""MEGC2019 composite (CDE): the official 3-class ground truth over SMIC-HS, CASME II and SAMM.

The ground-truth CSV (``combined_3class_gt.csv``, public at Facial-Micro-ExpressionGC/MEGC2019 ``images/``) lies
in the megc2019 raw root; the member datasets are read from their own raw roots (``snapshot.parts``) by their own
parsers, so every quirk of a member is handled once. The GT has no header; rows are ``db,subject,filename,label``
(label 0 negative, 1 positive, 2 surprise); the older ``combined_3class_gt-2.csv`` has blank ``,,,`` lines
between rows (skipped) and one row fewer.

Name reconciliation: GT ``casme2,sub01,EP02_01f`` = casme2 subject ``sub01``; ``samm,6,006_1_2`` = samm subject
``006``; ``smic,s01,s01_ne_01`` = smic_hs subject ``s01``, disk folder ``s1_ne_01``. Samples keep their member's
``dataset`` and fold subject (``casme2/sub01``, ``samm/006``, ``smic_hs/s01``) so a composite run and a
single-dataset run name folds alike. The GT label is the sample's ``label_override``. Member samples absent from
the GT are ``not_in_ground_truth`` exclusions; GT rows that match no member sample are ``gt_row_unmatched``
exclusions (dataset ``megc2019``, subject = the namespaced member subject, clip = the GT file name), as are
malformed (``gt_row_invalid``) and repeated (``gt_row_duplicate``) GT rows. Row and subject counts per member are
compared with the official file (442 rows, 68 subjects) and a warning names any difference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from microexpr.data.records import Candidate, Exclusion, RawDataError, Snapshot
from microexpr.data.sources import _common as c
from microexpr.data.sources import casme2, samm, smic

logger = logging.getLogger(__name__)

GT_PREFERENCE: tuple[str, ...] = ("combined_3class_gt.csv", "combined_3class_gt-2.csv")
GT_LABELS: dict[str, str] = {"0": "negative", "1": "positive", "2": "surprise"}
MEMBERS: dict[str, str] = {"casme2": "casme2", "samm": "samm", "smic": "smic_hs"}  # GT db -> source name
EXPECTED_COUNTS: dict[str, tuple[int, int]] = {"smic": (164, 16), "casme2": (145, 24), "samm": (133, 28)}
EXPECTED_TOTAL: tuple[int, int] = (442, 68)
READER_OPTIONS = frozenset({"gt_file", "members"})
GT_URL = "https://github.com/Facial-Micro-ExpressionGC/MEGC2019 (images/combined_3class_gt.csv)"


@dataclass(frozen=True)
class GtRow:
    db: str
    subject: str
    filename: str
    label: str
    line: int


def gt_key(db: str, subject: str, clip: str) -> tuple[str, str, str] | None:
    """The reconciled key of a sample: member subject spelling, SMIC clip in GT spelling; None if unreadable."""
    if db == "casme2":
        sub = casme2.canonical_subject(subject)
        return (db, sub, clip.strip()) if sub else None
    if db == "samm":
        sub = samm.canonical_subject(subject)
        return (db, sub, clip.strip()) if sub else None
    if db == "smic":
        sub = smic.canonical_subject(subject)
        return (db, sub, smic.canonical_clip(clip) or clip.strip()) if sub else None
    return None


def select_gt(snapshot: Snapshot, requested: str | None) -> str:
    """The GT table to use: ``gt_file`` if given, else the preferred official name present."""
    names = {c.table_basename(n): n for n in snapshot.tables}
    if requested:
        key = requested.strip().lower()
        for n in snapshot.tables:
            if n.lower() == key or c.table_basename(n) == key:
                return n
        raise RawDataError(
            f"megc2019: gt_file {requested!r} not found under {snapshot.root}; found {sorted(snapshot.tables)}"
        )
    present = [names[p] for p in GT_PREFERENCE if p in names]
    if not present:
        raise RawDataError(
            f"megc2019: no combined_3class_gt.csv under {snapshot.root}; download it from {GT_URL} "
            f"(found: {sorted(snapshot.tables) or 'nothing'})"
        )
    if len(present) > 1:
        logger.warning(
            "megc2019: several ground-truth files (%s); reading %s (set reader option gt_file to choose)",
            ", ".join(present),
            present[0],
        )
    return present[0]


def read_gt(table: Any, name: str) -> tuple[list[GtRow], list[Exclusion]]:
    """GT rows (blank lines and a header line skipped) and exclusions for rows that cannot be used."""
    rows: list[GtRow] = []
    bad: list[Exclusion] = []
    for i in range(len(table)):
        cells = [c.cell_text(v) for v in table.iloc[i].tolist()]
        if all(v is None for v in cells):
            continue
        cells = (cells + [None] * 4)[:4]
        db, subject, filename, label = ((v or "").strip() for v in cells)
        line = c.excel_row(i)
        if i == 0 and db.lower() == "db":
            continue
        if db.lower() not in MEMBERS or not subject or not filename or label not in GT_LABELS:
            bad.append(
                Exclusion(
                    "megc2019",
                    subject,
                    filename,
                    f"{name} line {line}",
                    "gt_row_invalid",
                    f"{name} line {line}: {','.join(v or '' for v in cells)!r} is not "
                    f"db(casme2|samm|smic),subject,filename,label(0|1|2)",
                )
            )
            continue
        rows.append(GtRow(db.lower(), subject, filename, label, line))
    return rows, bad


def check_counts(keys: list[tuple[str, str, str]], name: str) -> None:
    """Warn when the GT does not have the official per-member row/subject counts (fixtures are smaller)."""
    found = {
        db: (sum(1 for k in keys if k[0] == db), len({k[1] for k in keys if k[0] == db}))
        for db in EXPECTED_COUNTS
    }
    total = (len(keys), sum(s for _, s in found.values()))
    if found != EXPECTED_COUNTS or total != EXPECTED_TOTAL:
        logger.warning(
            "megc2019: %s has %d usable rows / %d subjects (%s); the official file has 442 / 68 "
            "(smic 164/16, casme2 145/24, samm 133/28)",
            name,
            total[0],
            total[1],
            ", ".join(f"{db} {n}/{k}" for db, (n, k) in found.items()),
        )


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Member candidates labelled by the GT, plus exclusions for non-GT samples and unmatched GT rows."""
    from microexpr.data.sources import get_source  # the registry imports this package

    c.check_options(options, READER_OPTIONS, "megc2019")
    if not snapshot.root_exists:
        raise RawDataError(
            f"megc2019: raw root {snapshot.root} does not exist; it must hold the GT CSV from {GT_URL}"
        )
    name = select_gt(snapshot, options.get("gt_file"))
    rows, exclusions = read_gt(snapshot.tables[name], name)

    gt: dict[tuple[str, str, str], GtRow] = {}
    for r in rows:
        key = gt_key(r.db, r.subject, r.filename)
        source = f"{name} line {r.line}"
        if key is None:
            exclusions.append(
                Exclusion(
                    "megc2019",
                    r.subject,
                    r.filename,
                    source,
                    "gt_row_invalid",
                    f"{source}: subject {r.subject!r} is not a {r.db} subject id",
                )
            )
        elif key in gt:
            exclusions.append(
                Exclusion(
                    "megc2019",
                    f"{MEMBERS[r.db]}/{key[1]}",
                    f"{r.filename}@line{r.line}",
                    source,
                    "gt_row_duplicate",
                    f"{source} repeats line {gt[key].line}",
                )
            )
        else:
            gt[key] = r
    check_counts(list(gt), name)

    member_options = dict(options.get("members") or {})
    unknown = sorted(set(member_options) - set(MEMBERS.values()))
    if unknown:
        raise ValueError(f"megc2019: reader option members names unknown member(s) {unknown}")
    candidates: list[Candidate] = []
    member_exclusions: dict[tuple[str, str, str], Exclusion] = {}
    matched: set[tuple[str, str, str]] = set()
    db_of = {source: db for db, source in MEMBERS.items()}
    for source_name in MEMBERS.values():
        part = snapshot.parts.get(source_name)
        if part is None:
            raise RawDataError(
                f"megc2019: member dataset {source_name} was not read (snapshot.parts lacks it)"
            )
        spec = get_source(source_name)
        found, excluded = spec.parser()(part, {**spec.options, **member_options.get(source_name, {})})
        db = db_of[source_name]
        for e in excluded:
            key = gt_key(db, e.subject, e.clip)
            if key is not None:
                member_exclusions[key] = e
        exclusions += excluded
        for cand in found:
            key = gt_key(db, cand.subject, cand.clip)
            row = gt.get(key) if key is not None else None
            if row is None:
                exclusions.append(
                    Exclusion(
                        cand.dataset,
                        cand.subject,
                        cand.clip,
                        cand.source,
                        "not_in_ground_truth",
                        f"{cand.source}: not listed in {name}",
                    )
                )
                continue
            matched.add(key)
            cand.label_override = GT_LABELS[row.label]
            cand.notes.append(f"label {row.label} ({GT_LABELS[row.label]}) from {name} line {row.line}")
            candidates.append(cand)

    for key, r in gt.items():
        if key in matched:
            continue
        source = f"{name} line {r.line}"
        why = "no such sample on disk or in the member's annotation"
        if key in member_exclusions:
            e = member_exclusions[key]
            why = f"the {e.dataset} reader excluded it ({e.reason_code}: {e.reason})"
        exclusions.append(
            Exclusion(
                "megc2019",
                f"{MEMBERS[r.db]}/{key[1]}",
                r.filename,
                source,
                "gt_row_unmatched",
                f"{source} ({r.db},{r.subject},{r.filename},{r.label}): {why}",
            )
        )
    logger.info("megc2019: %d of %d ground-truth rows matched a member sample", len(matched), len(gt))
    return candidates, exclusions
