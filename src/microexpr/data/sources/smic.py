"""SMIC (HS / VIS / NIR): no annotation file; samples and labels come from the folder tree.

Layout under the raw root (docs/datasets.md): ``<variant>/s1/micro/{negative,positive,surprise}/s1_ne_01/``
holding ``image046536.bmp`` (raw release; ``.jpg`` in some copies) or ``reg_image046536.bmp`` (cropped). The
variant folder (``HS``, ``VIS``, ``NIR``) may sit under ``SMIC_all_raw/`` or ``SMIC_all_cropped/``, or the root
may be the variant folder itself; reader option ``frames_dir`` picks one explicitly.

Conventions: ``subject`` is the zero-padded id used by the MEGC2019 ground truth (disk ``s1`` -> ``s01``,
fold subject ``smic_hs/s01``) while ``clip`` keeps the folder name as on disk (``s1_ne_01``); onset/offset are the
first/last frame numbers in the folder (numbers from the original long recording); apex is None because SMIC
never annotates one (the index builder's per-dataset policy sets the midpoint by default). Folders under
``sN/non_micro/`` are not micro-expressions and are reported as ``not_micro`` exclusions; any other image folder
under the variant folder that does not fit the layout is reported as ``unrecognised_folder``.
"""

from __future__ import annotations

import logging
import posixpath
import re
from typing import Any

from microexpr.data.records import Candidate, Exclusion, RawDataError, Snapshot
from microexpr.data.sources import _common as c

logger = logging.getLogger(__name__)

FPS: dict[str, float] = {"HS": 100.0, "VIS": 25.0, "NIR": 25.0}
EMOTIONS: tuple[str, ...] = ("negative", "positive", "surprise")
MICRO_PATTERN = re.compile(r"(s\d+)/micro/([^/]+)/([^/]+)", re.IGNORECASE)
SUBJECT_PATTERN = re.compile(r"s\d+/(?:micro|non_micro)/.+", re.IGNORECASE)
READER_OPTIONS = frozenset({"variant", "frames_dir", "fps"})


def canonical_subject(text: str) -> str | None:
    """``s1``, ``S01``, ``s01`` -> ``s01``; anything else -> None."""
    return c.numbered_id(text, r"s0*(\d+)", "s{:02d}")


def canonical_clip(text: str) -> str | None:
    """``s1_ne_01`` / ``s01_ne_01`` -> ``s01_ne_01`` (the MEGC2019 spelling); other names -> None."""
    match = re.fullmatch(r"s0*(\d+)_([a-z]+)_(\d+)", text.strip(), re.IGNORECASE)
    if not match:
        return None
    return f"s{int(match.group(1)):02d}_{match.group(2).lower()}_{match.group(3)}"


def variant_root(snapshot: Snapshot, variant: str, requested: str | None) -> str:
    """The folder holding the ``sN/`` subject folders of the chosen variant (``""`` = the root itself)."""
    prefixes: set[str] = set()
    for d in snapshot.dirs:
        parts = d.split("/")
        for k in range(len(parts)):
            if SUBJECT_PATTERN.fullmatch("/".join(parts[k:])):
                prefixes.add("/".join(parts[:k]))
                break
    if requested is not None:
        wanted = requested.strip().strip("/")
        if wanted not in prefixes:
            raise RawDataError(
                f"{snapshot.dataset}: frames_dir {requested!r} holds no sN/micro/<emotion>/<clip> folders under "
                f"{snapshot.root}; folders that do: {sorted(prefixes) or 'none'}"
            )
        return wanted
    named = sorted(p for p in prefixes if posixpath.basename(p).lower() == variant.lower())
    if named:
        raw = [p for p in named if "crop" not in p.lower()]
        chosen = (raw or named)[0]
        if len(named) > 1:
            logger.warning(
                "%s: several %s folders found (%s); reading %s (set the reader option frames_dir to choose)",
                snapshot.dataset,
                variant,
                ", ".join(named),
                chosen,
            )
        return chosen
    if "" in prefixes:
        return ""
    raise RawDataError(
        f"{snapshot.dataset}: no {variant}/sN/micro/<emotion>/<clip>/ folders under {snapshot.root} "
        f"(expected e.g. {variant}/s1/micro/negative/s1_ne_01/image046536.bmp; found layouts under: "
        f"{sorted(prefixes) or 'none'})"
    )


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """One Candidate per ``micro/<emotion>/<clip>`` folder; exclusions for ``non_micro`` and stray folders."""
    dataset = snapshot.dataset
    c.check_options(options, READER_OPTIONS, dataset)
    variant = str(options.get("variant") or "").upper()
    if variant not in FPS:
        raise ValueError(f"{dataset}: reader option variant must be one of {sorted(FPS)}, not {variant!r}")
    if not snapshot.root_exists:
        raise RawDataError(f"{dataset}: raw root {snapshot.root} does not exist (set raw_roots.{dataset})")
    if snapshot.tables:
        logger.info(
            "%s: annotation files are not used for SMIC (labels come from folders): %s",
            dataset,
            ", ".join(sorted(snapshot.tables)),
        )
    fps = float(options.get("fps") or FPS[variant])
    base = variant_root(snapshot, variant, options.get("frames_dir"))
    prefix = f"{base}/" if base else ""

    candidates: list[Candidate] = []
    exclusions: list[Exclusion] = []
    accounted: set[str] = set()
    for d in sorted(snapshot.dirs):
        if not d.startswith(prefix):
            continue
        rest = d[len(prefix) :]
        if not SUBJECT_PATTERN.fullmatch(rest):
            continue
        accounted.add(d)
        parts = rest.split("/")
        subject = canonical_subject(parts[0]) or parts[0]
        clip = parts[-1]
        match = MICRO_PATTERN.fullmatch(rest)
        if parts[1].lower() == "non_micro":
            exclusions.append(
                Exclusion(
                    dataset,
                    subject,
                    clip,
                    d,
                    "not_micro",
                    f"{d} is under non_micro/: not a micro-expression sample",
                )
            )
            continue
        if match is None or match.group(2).lower() not in EMOTIONS:
            exclusions.append(
                Exclusion(
                    dataset,
                    subject,
                    clip,
                    d,
                    "unrecognised_folder",
                    f"{d} does not fit {variant}/sN/micro/<negative|positive|surprise>/<clip>/",
                )
            )
            continue
        notes: list[str] = []
        frames = c.frames_of(snapshot, d, notes)
        if parts[0] != subject:
            notes.append(f"subject folder {parts[0]!r} read as {subject!r}")
        candidates.append(
            Candidate(
                dataset=dataset,
                subject=subject,
                clip=clip,
                fold_subject=f"{dataset}/{subject}",
                clip_dir=d,
                frames=frames,
                onset=frames[0][0] if frames else None,
                apex=None,
                offset=frames[-1][0] if frames else None,
                fps=fps,
                au_raw=None,
                emotion_raw=match.group(2),
                source=d,
                notes=notes,
            )
        )
    c.log_unread_folders(snapshot, accounted)
    return candidates, exclusions
