"""Synthetic micro-expression clips in CASME II's layout, from real face photographs (the default dataset).

Method (``../shared/reference/face_synthesis.md`` beside the checkout): dlib 68 landmarks on an aligned identity canvas →
per-AU control-point displacements (inter-ocular-distance units, varied per subject) → a dense displacement
field per AU (normalised Gaussian-kernel regression with a "no motion" prior) and a painted shading map →
raised-cosine onset/apex/offset envelope → one ``cv2.remap`` per frame, plus head jitter, drift, flicker and
sensor noise. Labels follow the CASME II AU criteria, so the set is learnable but, like real data, not trivial.

Everything here is pure (no file I/O): :func:`generate_synthetic_dataset` is the Kedro node body; it yields lazy
:class:`ClipRender` chunks that the writer (``microexpr.datasets.SyntheticCasme2Dataset``) renders and stores,
then one :class:`SyntheticManifest`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import pandas as pd

from microexpr.vision.face import default_predictor_path

# Bump when a change alters the rendered frames for unchanged parameters (invalidates every stored clip).
GENERATOR_VERSION = "1.0"

CASME2_COLUMNS: tuple[str, ...] = (
    "Subject",
    "Filename",
    "Unnamed: 2",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Unnamed: 6",
    "Action Units",
    "Estimated Emotion",
)
ANNOTATION_FILE = "CASME2-coding-20140508.xlsx"
FRAMES_FOLDER = "CASME2_RAW_selected"

LONDON_ATTRIBUTION = (
    "Face photographs: DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
    "https://doi.org/10.6084/m9.figshare.5047666.v5 - licence CC BY 4.0. The frames of this dataset are "
    "altered (warped, shaded, noised) versions of these photographs."
)

DEFAULT_PARAMS: dict[str, Any] = {
    "seed": 20140508,
    "n_subjects": 16,
    "clips_per_subject": [8, 10],
    # CASME II 5-class counts (246 clips); only the proportions are used.
    "class_weights": {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25},
    "fps": 200,
    "canvas_size": 320,
    "lead_in_frames": [8, 19],
    "onset_to_apex_ms": [40, 110],
    "hold_frames": [0, 3],
    "apex_to_offset_ms": [80, 250],
    "expression_ms": [60, 360],
    "tail_frames": [6, 12],
    "first_frame": [1, 400],
    "intensity": [0.2, 0.7],
    "expressiveness_sigma": 0.2,
    "subject_var": 0.5,
    "unilateral_prob": 0.15,
    "apex_label_jitter_frames": 2,
    "noise_sigma": 3.0,
    "jitter_px": 0.6,
    "jitter_tau_s": 0.15,
    "jitter_rot_deg": 0.3,
    "jitter_scale": 0.003,
    "drift_px": 2.0,
    "flicker": 0.006,
    "jpeg_quality": 90,
    "missing_apex_clips": 1,
    "missing_apex_cell": "/",
}

# Parameters that build_face_basis reads; they (and nothing else from params) enter the basis part of a clip key.
BASIS_PARAM_KEYS: tuple[str, ...] = ("canvas_size", "subject_var")

# CASME II AU criteria (face_synthesis.md §2.8): class -> ((AU combination, weight), ...).
AU_COMBOS: dict[str, tuple[tuple[tuple[int, ...], int], ...]] = {
    "happiness": (((12,), 3), ((6, 12), 3), ((6,), 1), ((12, 25), 1)),
    "disgust": (((9,), 2), ((10,), 2), ((4, 7), 3), ((4, 9), 1), ((4, 10), 1)),
    "surprise": (((1, 2), 4), ((1, 2, 25), 1), ((2,), 1), ((25, 26), 1)),
    "repression": (((15,), 2), ((17,), 2), ((15, 17), 2), ((14,), 2), ((14, 17), 1), ((24,), 1)),
    "others": (((4,), 4), ((7,), 2), ((23,), 1), ((20,), 1), ((1, 4), 1)),
}
LATERAL_AUS: frozenset[int] = frozenset({2, 4, 10, 12, 14, 15, 20})
LATERAL_RESIDUAL = 0.15  # the "other" side of a one-sided AU still moves a little
LOW_AUS_SCALE = {25: 0.7, 26: 0.7}  # warping cannot open the mouth: keep lip parting small

# --- control points -------------------------------------------------------------------------------------------
# 68 dlib landmarks, then virtual points (indices 68..): names map to their indices (image-left first).
VIRTUAL_GROUPS: dict[str, tuple[int, ...]] = {
    "forehead_inner": (68, 69),
    "forehead_outer": (70, 71),
    "glabella": (72,),
    "cheek": (73, 74),
    "lower_cheek": (75, 76),
    "nasolabial": (77, 78),
    "dimple": (79, 80),
    "chin": (81,),
}
PointRef = int | str
# AU -> ((points, lateral dx, downward dy), ...) in IOD units at intensity 1; lateral = away from the midline.
# fmt: off
AU_SPECS: dict[int, tuple[tuple[tuple[PointRef, ...], float, float], ...]] = {
    1: (((21, 22), 0, -0.05), ((20, 23), 0, -0.035), ((19, 24), 0, -0.018), (("forehead_inner",), 0, -0.03),
        (("glabella",), 0, -0.01)),
    2: (((17, 26), 0, -0.05), ((18, 25), 0, -0.045), ((19, 24), 0, -0.03), ((20, 23), 0, -0.012),
        (("forehead_outer",), 0, -0.03)),
    4: (((21, 22), -0.03, 0.035), ((20, 23), -0.02, 0.028), ((19, 24), -0.01, 0.015),
        (("forehead_inner",), -0.015, 0.02), (("glabella",), 0, 0.012)),
    5: (((37, 38, 43, 44), 0, -0.022), ((36, 39, 42, 45), 0, -0.006), ((19, 20, 23, 24), 0, -0.008)),
    6: (((40, 41, 46, 47), 0, -0.018), (("cheek",), 0, -0.03), (("lower_cheek",), 0, -0.015),
        ((36, 45), 0, -0.008), (("nasolabial",), 0.006, -0.012)),
    7: (((40, 41, 46, 47), 0, -0.022), ((37, 38, 43, 44), 0, 0.008), ((36, 45), -0.004, 0), ((39, 42), 0, -0.004)),
    9: (((31, 35), 0, -0.025), ((32, 34), 0, -0.02), ((30,), 0, -0.012), ((21, 22), 0, 0.02), ((20, 23), 0, 0.01),
        ((50, 52), 0, -0.012), (("nasolabial",), 0, -0.012)),
    10: (((50, 52), 0, -0.04), ((51,), 0, -0.035), ((49, 53), 0, -0.025), ((61, 62, 63), 0, -0.03),
         (("nasolabial",), 0.004, -0.015), ((31, 35), 0, -0.008)),
    12: (((48, 54), 0.048, -0.036), ((60, 64), 0.04, -0.03), ((49, 53, 59, 55), 0.022, -0.018),
         (("dimple",), 0.035, -0.028), (("nasolabial",), 0.012, -0.014), (("cheek",), 0.004, -0.012)),
    14: (((48, 54), 0.018, 0), ((60, 64), 0.015, 0), (("dimple",), 0.012, 0), ((49, 53, 59, 55), 0.008, 0)),
    15: (((48, 54), 0, 0.04), ((60, 64), 0, 0.032), ((59, 55), 0, 0.02), ((49, 53), 0, 0.014),
         (("dimple",), 0, 0.03)),
    17: ((("chin",), 0, -0.03), ((57,), 0, -0.025), ((56, 58), 0, -0.02), ((65, 66, 67), 0, -0.018),
         ((7, 8, 9), 0, -0.01)),
    20: (((48, 54), 0.045, 0.006), ((60, 64), 0.038, 0.004), ((49, 53, 59, 55), 0.018, 0),
         (("dimple",), 0.03, 0.004)),
    23: (((48, 54), -0.012, 0), ((60, 64), -0.01, 0), ((50, 51, 52), 0, 0.008), ((56, 57, 58), 0, -0.008),
         ((61, 62, 63), 0, 0.006), ((65, 66, 67), 0, -0.006)),
    24: (((51, 62), 0, 0.016), ((57, 66), 0, -0.016), ((50, 52, 61, 63), 0, 0.012), ((56, 58, 65, 67), 0, -0.012)),
    25: (((65, 66, 67), 0, 0.02), ((57,), 0, 0.012), ((56, 58), 0, 0.01)),
    26: (((7, 8, 9), 0, 0.03), (("chin",), 0, 0.03), ((57,), 0, 0.028), ((56, 58), 0, 0.025),
         ((65, 66, 67), 0, 0.025), ((5, 6, 10, 11), 0, 0.015), ((4, 12), 0, 0.006)),
}
# fmt: on
SUPPORTED_AUS: tuple[int, ...] = tuple(sorted(AU_SPECS))
FIELD_SIGMA_IOD = 0.12
FIELD_KAPPA = 0.25
FIELD_COARSE = 4
MIDLINE_TOL_IOD = 0.04

_TAG_FACES, _TAG_SUBJECT, _TAG_CLIPS, _TAG_LABELS, _TAG_QUIRKS, _TAG_BASIS = 1, 2, 3, 4, 5, 6
_TAG_MOTION, _TAG_FLICKER, _TAG_NOISE = 11, 12, 13


# --- records ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FacePhotos:
    """Face photographs keyed by id (RGB uint8), where they came from, and whether they are the fallback faces.

    ``attribution`` is the licence/credit text the README must carry when frames derived from them are shared.
    """

    images: dict[str, np.ndarray]
    provenance: str
    fallback: bool = False
    attribution: str | None = None


@dataclass(frozen=True)
class AUAction:
    """One action unit of a clip: number, side as written in the AU cell (``"L"``/``"R"``/None), intensity."""

    au: int
    side: str | None
    intensity: float


@dataclass(frozen=True)
class Nuisance:
    """Per-clip nuisance settings (head jitter OU process, drift, flicker, sensor noise)."""

    noise_sigma: float
    jitter_px: float
    jitter_tau_s: float
    jitter_rot_deg: float
    jitter_scale: float
    drift_px: float
    flicker: float


@dataclass(frozen=True)
class SubjectPlan:
    """One synthetic subject: folder name, source face, per-subject seed and (fallback only) photo variant."""

    number: int
    folder: str
    face_id: str
    seed: int
    expressiveness: float
    variant: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ClipPlan:
    """Everything that determines one clip's frames and its annotation row.

    Frame indices below are 0-based within the clip; ``first_frame`` is the number of its first image
    (``img<first_frame>.jpg``), which is also the annotated OnsetFrame (the folder holds onset..offset only).
    The motion itself starts after ``lead`` neutral frames and ends ``tail`` frames before the last one.
    """

    subject: str
    subject_number: int
    clip: str
    emotion: str
    actions: tuple[AUAction, ...]
    au_cell: int | str
    first_frame: int
    lead: int
    rise: int
    hold: int
    fall: int
    tail: int
    apex_label: int | None
    fps: float
    seed: int
    nuisance: Nuisance

    @property
    def n_frames(self) -> int:
        return self.lead + self.rise + self.hold + self.fall + self.tail

    @property
    def apex_index(self) -> int:
        """0-based index of the true apex (middle of the hold)."""
        return self.lead + self.rise + self.hold // 2

    @property
    def onset_frame(self) -> int:
        return self.first_frame

    @property
    def offset_frame(self) -> int:
        return self.first_frame + self.n_frames - 1

    @property
    def frame_numbers(self) -> tuple[int, ...]:
        return tuple(range(self.first_frame, self.first_frame + self.n_frames))

    @property
    def expression_ms(self) -> float:
        """Duration of the facial motion (rise + hold + fall) in milliseconds."""
        return 1000.0 * (self.rise + self.hold + self.fall) / self.fps

    def envelope(self) -> np.ndarray:
        """Expression amplitude a(t) in [0, 1] per frame: raised-cosine rise, hold, raised-cosine fall."""
        a = np.zeros(self.n_frames, dtype=np.float64)
        start, top = self.lead, self.lead + self.rise
        down = top + self.hold
        end = down + self.fall
        t = np.arange(self.n_frames, dtype=np.float64)
        rising = (t >= start) & (t < top)
        a[rising] = 0.5 * (1 - np.cos(np.pi * (t[rising] - start) / self.rise))
        a[(t >= top) & (t <= down)] = 1.0
        falling = (t > down) & (t <= end)
        a[falling] = 0.5 * (1 + np.cos(np.pi * (t[falling] - down) / self.fall))
        return a

    def annotation_row(self, missing_apex_cell: object) -> dict[str, object]:
        """The row of CASME2-coding-20140508.xlsx for this clip (Python values as written to the cells)."""
        return {
            "Subject": self.subject_number,
            "Filename": self.clip,
            "Unnamed: 2": None,
            "OnsetFrame": self.onset_frame,
            "ApexFrame": self.apex_label if self.apex_label is not None else missing_apex_cell,
            "OffsetFrame": self.offset_frame,
            "Unnamed: 6": None,
            "Action Units": self.au_cell,
            "Estimated Emotion": self.emotion,
        }


@dataclass(frozen=True)
class SyntheticPlan:
    """The whole dataset before rendering: subjects, clips (sorted by subject then clip name), settings."""

    subjects: tuple[SubjectPlan, ...]
    clips: tuple[ClipPlan, ...]
    fallback: bool
    params: dict[str, Any]

    def annotation_frame(self) -> pd.DataFrame:
        """The annotation table in the CASME2-coding-20140508 layout (9 columns, mixed int/str cells kept)."""
        rows = [c.annotation_row(self.params["missing_apex_cell"]) for c in self.clips]
        frame = pd.DataFrame(rows, columns=list(CASME2_COLUMNS))
        for col in ("Subject", "OnsetFrame", "OffsetFrame"):
            frame[col] = frame[col].astype("int64")
        for col in ("Unnamed: 2", "ApexFrame", "Unnamed: 6", "Action Units"):
            frame[col] = frame[col].astype(object)
        return frame


@dataclass(frozen=True)
class SyntheticSkipped:
    """The node's only chunk when another dataset is selected: the writer writes nothing."""

    reason: str


@dataclass(frozen=True)
class ClipRender:
    """One clip to store: where, its annotation row, a content key, and a lazy ``render()`` returning RGB frames."""

    subject: str
    clip: str
    index: int
    total: int
    frame_numbers: tuple[int, ...]
    annotation: dict[str, object]
    key: str
    jpeg_quality: int
    render: Callable[[], list[np.ndarray]] = field(repr=False, compare=False)

    @property
    def relpath(self) -> str:
        return f"{FRAMES_FOLDER}/{self.subject}/{self.clip}"


@dataclass(frozen=True)
class SyntheticManifest:
    """Final chunk: the annotation table plus everything the README and manifest.json report."""

    annotation: pd.DataFrame
    params: dict[str, Any]
    generator_version: str
    fallback: bool
    face_provenance: str
    attribution: str | None
    subjects: dict[str, str]
    clips: list[dict[str, Any]]
    counts_per_class: dict[str, int]
    counts_per_subject: dict[str, int]
    n_frames: int
    readme: str

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable summary (manifest.json)."""
        return {
            "generated": True,
            "generator_version": self.generator_version,
            "annotation_file": ANNOTATION_FILE,
            "frames_folder": FRAMES_FOLDER,
            "fallback": self.fallback,
            "face_provenance": self.face_provenance,
            "attribution": self.attribution,
            "params": _jsonable(self.params),
            "subjects": self.subjects,
            "n_subjects": len(self.subjects),
            "n_clips": len(self.clips),
            "n_frames": self.n_frames,
            "counts_per_class": self.counts_per_class,
            "counts_per_subject": self.counts_per_subject,
            "clips": self.clips,
        }


SyntheticChunk = SyntheticSkipped | ClipRender | SyntheticManifest


# --- parameters -------------------------------------------------------------------------------------------------
def resolve_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with the user's ``synthetic`` parameters; unknown keys and bad ranges raise ValueError."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    cfg = {**DEFAULT_PARAMS, **params}
    for name, value in cfg.items():
        if isinstance(DEFAULT_PARAMS[name], list):
            if not (isinstance(value, list | tuple) and len(value) == 2 and value[0] <= value[1]):
                raise ValueError(
                    f"synthetic.{name} must be a [low, high] pair with low <= high, got {value!r}"
                )
            cfg[name] = list(value)
    if cfg["n_subjects"] < 1 or cfg["clips_per_subject"][0] < 1:
        raise ValueError("synthetic.n_subjects and synthetic.clips_per_subject must be >= 1")
    unknown_classes = sorted(set(cfg["class_weights"]) - set(AU_COMBOS))
    if unknown_classes or not any(w > 0 for w in cfg["class_weights"].values()):
        raise ValueError(
            f"synthetic.class_weights must weigh classes among {sorted(AU_COMBOS)}, got {cfg['class_weights']!r}"
        )
    if cfg["canvas_size"] < 96:
        raise ValueError(
            f"synthetic.canvas_size must be >= 96 px for dlib to find the face, got {cfg['canvas_size']}"
        )
    if not 1 <= cfg["jpeg_quality"] <= 100:
        raise ValueError(f"synthetic.jpeg_quality must be in 1..100, got {cfg['jpeg_quality']}")
    return cfg


def ms_to_frames(ms: float, fps: float) -> int:
    return int(round(ms * fps / 1000.0))


def _jsonable(value: Any) -> Any:
    """Plain JSON types (tuples → lists, numpy scalars → Python)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# --- planning ---------------------------------------------------------------------------------------------------
def allocate_counts(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` over classes in proportion to ``weights`` (largest remainder; ties by class name)."""
    names = sorted(k for k, w in weights.items() if w > 0)
    wsum = float(sum(weights[k] for k in names))
    exact = {k: total * weights[k] / wsum for k in names}
    counts = {k: int(math.floor(v)) for k, v in exact.items()}
    order = sorted(names, key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def _weighted_choice(rng: np.random.Generator, options: Sequence[tuple[Any, float]]) -> Any:
    weights = np.array([w for _, w in options], dtype=np.float64)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def _clip_names(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct CASME II-like clip folder names (``EP02_01f``, ``EP07_03``, ``EP01_2``), sorted."""
    pairs = [(ep, k) for ep in range(1, 20) for k in range(1, 10)]
    picked = rng.choice(len(pairs), size=count, replace=False)
    names = []
    for i in picked:
        ep, k = pairs[int(i)]
        style = rng.random()
        if style < 0.6:
            names.append(f"EP{ep:02d}_{k:02d}")
        elif style < 0.9:
            names.append(f"EP{ep:02d}_{k:02d}f")
        else:
            names.append(f"EP{ep:02d}_{k}")
    return sorted(names)


def au_cell(actions: Sequence[AUAction]) -> int | str:
    """The Action Units cell as CASME II writes it: an int for one plain AU, else ``"6+R12"``-style text."""
    if len(actions) == 1 and actions[0].side is None:
        return actions[0].au
    return "+".join(f"{a.side or ''}{a.au}" for a in sorted(actions, key=lambda a: a.au))


def _timing(rng: np.random.Generator, cfg: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(lead, rise, hold, fall, tail) frames; the motion (rise+hold+fall) stays within ``expression_ms``."""
    fps = cfg["fps"]
    lo_total = max(1, ms_to_frames(cfg["expression_ms"][0], fps))
    hi_total = ms_to_frames(cfg["expression_ms"][1], fps)
    rise = int(
        rng.integers(
            max(1, ms_to_frames(cfg["onset_to_apex_ms"][0], fps)),
            ms_to_frames(cfg["onset_to_apex_ms"][1], fps) + 1,
        )
    )
    hold = int(rng.integers(cfg["hold_frames"][0], cfg["hold_frames"][1] + 1))
    fall_lo = max(1, ms_to_frames(cfg["apex_to_offset_ms"][0], fps), lo_total - rise - hold)
    fall_hi = min(ms_to_frames(cfg["apex_to_offset_ms"][1], fps), hi_total - rise - hold)
    if fall_hi < fall_lo:
        raise ValueError(
            "synthetic timing ranges are inconsistent: onset_to_apex_ms + hold_frames + apex_to_offset_ms cannot "
            f"fit in expression_ms={cfg['expression_ms']}"
        )
    fall = int(rng.integers(fall_lo, fall_hi + 1))
    lead = int(rng.integers(cfg["lead_in_frames"][0], cfg["lead_in_frames"][1] + 1))
    tail = int(rng.integers(cfg["tail_frames"][0], cfg["tail_frames"][1] + 1))
    return lead, rise, hold, fall, tail


def _fallback_variant(rng: np.random.Generator, index: int, n_faces: int) -> tuple[tuple[str, float], ...]:
    """Photo variation for subjects derived from the 1-2 fallback faces (the first use of each face is as is)."""
    if index < n_faces:
        return ()
    return (
        ("mirror", float((index // n_faces) % 2)),
        ("gamma", float(rng.uniform(0.8, 1.2))),
        ("tint_a", float(rng.uniform(-8, 8))),
        ("tint_b", float(rng.uniform(-8, 8))),
        ("scale", float(rng.uniform(0.93, 1.07))),
    )


def _plan_actions(
    rng: np.random.Generator, emotion: str, cfg: dict[str, Any], expressiveness: float
) -> tuple[AUAction, ...]:
    combo = _weighted_choice(rng, AU_COMBOS[emotion])
    actions = []
    for au in combo:
        side = None
        if au in LATERAL_AUS and rng.random() < cfg["unilateral_prob"]:
            side = "L" if rng.random() < 0.5 else "R"
        level = float(rng.uniform(*cfg["intensity"])) * expressiveness * LOW_AUS_SCALE.get(au, 1.0)
        actions.append(AUAction(au=au, side=side, intensity=round(level, 4)))
    return tuple(actions)


def plan_dataset(params: dict[str, Any], face_ids: list[str], fallback: bool) -> SyntheticPlan:
    """Deterministic (for ``params["seed"]``) plan of subjects, clips, labels, AUs, timing and quirks.

    Without ``fallback`` each subject gets its own face photo (``n_subjects`` distinct ids drawn with the seed).
    With ``fallback`` (only the 1-2 public-domain faces) subjects cycle over the faces, each later subject a
    mirrored / re-toned / rescaled variant: useful for smoke tests, but identities leak across LOSO folds.
    """
    cfg = resolve_params(params)
    seed = int(cfg["seed"])
    ids = sorted(face_ids)
    n_subj = int(cfg["n_subjects"])
    if not ids:
        raise ValueError("no face photos to build synthetic subjects from")
    if not fallback and n_subj > len(ids):
        raise ValueError(
            f"synthetic.n_subjects={n_subj} needs {n_subj} distinct face photos but only {len(ids)} were given; "
            "lower synthetic.n_subjects or add photos to the faces folder"
        )
    face_rng = np.random.default_rng([seed, _TAG_FACES])
    if fallback:
        chosen = [ids[i % len(ids)] for i in range(n_subj)]
    else:
        chosen = [ids[i] for i in sorted(face_rng.choice(len(ids), size=n_subj, replace=False))]

    subjects = []
    clip_counts = []
    for i, face_id in enumerate(chosen):
        srng = np.random.default_rng([seed, _TAG_SUBJECT, i + 1])
        expressiveness = float(np.exp(srng.normal(0.0, cfg["expressiveness_sigma"])))
        variant = _fallback_variant(srng, i, len(ids)) if fallback else ()
        subjects.append(
            SubjectPlan(
                number=i + 1,
                folder=f"sub{i + 1:02d}",
                face_id=face_id,
                seed=int(srng.integers(0, 2**31 - 1)),
                expressiveness=round(expressiveness, 4),
                variant=variant,
            )
        )
        clip_counts.append(int(srng.integers(cfg["clips_per_subject"][0], cfg["clips_per_subject"][1] + 1)))

    total = sum(clip_counts)
    counts = allocate_counts(total, cfg["class_weights"])
    labels = [name for name in sorted(counts) for _ in range(counts[name])]
    label_rng = np.random.default_rng([seed, _TAG_LABELS])
    labels = [labels[int(i)] for i in label_rng.permutation(total)]

    nuisance = Nuisance(
        **{
            k: float(cfg[k])
            for k in (
                "noise_sigma",
                "jitter_px",
                "jitter_tau_s",
                "jitter_rot_deg",
                "jitter_scale",
                "drift_px",
                "flicker",
            )
        }
    )
    clips: list[ClipPlan] = []
    cursor = 0
    for subject, n_clips in zip(subjects, clip_counts, strict=True):
        crng = np.random.default_rng([seed, _TAG_CLIPS, subject.number])
        names = _clip_names(crng, n_clips)
        for name in names:
            emotion = labels[cursor]
            cursor += 1
            actions = _plan_actions(crng, emotion, cfg, subject.expressiveness)
            lead, rise, hold, fall, tail = _timing(crng, cfg)
            first = int(crng.integers(cfg["first_frame"][0], cfg["first_frame"][1] + 1))
            jitter = int(cfg["apex_label_jitter_frames"])
            apex_index = lead + rise + hold // 2 + int(crng.integers(-jitter, jitter + 1))
            apex_index = int(np.clip(apex_index, lead + 1, lead + rise + hold + fall - 1))
            clips.append(
                ClipPlan(
                    subject=subject.folder,
                    subject_number=subject.number,
                    clip=name,
                    emotion=emotion,
                    actions=actions,
                    au_cell=au_cell(actions),
                    first_frame=first,
                    lead=lead,
                    rise=rise,
                    hold=hold,
                    fall=fall,
                    tail=tail,
                    apex_label=first + apex_index,
                    fps=float(cfg["fps"]),
                    seed=int(crng.integers(0, 2**31 - 1)),
                    nuisance=nuisance,
                )
            )

    n_missing = min(int(cfg["missing_apex_clips"]), len(clips))
    if n_missing > 0:
        quirk_rng = np.random.default_rng([seed, _TAG_QUIRKS])
        for i in quirk_rng.choice(len(clips), size=n_missing, replace=False):
            clips[int(i)] = replace(clips[int(i)], apex_label=None)

    return SyntheticPlan(subjects=tuple(subjects), clips=tuple(clips), fallback=fallback, params=cfg)


# --- dlib helper ----------------------------------------------------------------------------------------------
@functools.cache
def _dlib_models() -> tuple[Any, Any]:
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(default_predictor_path()))


def detect_landmarks68(rgb: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """68 dlib landmarks (float32, x/y) of the largest face in an RGB uint8 image, or None when no face."""
    import dlib

    detector, predictor = _dlib_models()
    image = np.ascontiguousarray(rgb)
    boxes = detector(image, upsample)
    if len(boxes) == 0:
        return None
    box = max(boxes, key=lambda b: b.width() * b.height())
    shape = predictor(image, dlib.rectangle(box.left(), box.top(), box.right(), box.bottom()))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the image-left (36-41) and image-right (42-47) eyes."""
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)


# --- identity canvas ------------------------------------------------------------------------------------------
def _apply_variant(canvas: np.ndarray, variant: dict[str, float]) -> np.ndarray:
    """Mirror, rescale about the centre, gamma and Lab tint (fallback subjects only)."""
    out = canvas
    if variant.get("mirror", 0.0) > 0.5:
        out = out[:, ::-1]
    scale = variant.get("scale", 1.0)
    if scale != 1.0:
        size = out.shape[0]
        m = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), 0.0, scale)
        out = cv2.warpAffine(
            np.ascontiguousarray(out), m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    gamma = variant.get("gamma", 1.0)
    if gamma != 1.0:
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
        out = cv2.LUT(np.ascontiguousarray(out), lut)
    if variant.get("tint_a", 0.0) or variant.get("tint_b", 0.0):
        lab = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2LAB).astype(np.float32)
        lab[..., 1] += variant.get("tint_a", 0.0)
        lab[..., 2] += variant.get("tint_b", 0.0)
        out = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return np.ascontiguousarray(out)


def build_identity_canvas(
    photo_rgb: np.ndarray, size: int, face_id: str, variant: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-align a photo so the eye centres sit at (0.5 S, 0.40 S) with IOD = 0.30 S; return the
    S×S RGB canvas and its 68 dlib landmarks (found again on the canvas).

    Detection runs on a copy downscaled to ≤ 640 px; the photo is shrunk with INTER_AREA before the warp so
    large photos do not alias. Raises ValueError naming ``face_id`` when dlib finds no face.
    """
    height, width = photo_rgb.shape[:2]
    small_scale = min(1.0, 640.0 / max(height, width))
    small = (
        cv2.resize(photo_rgb, None, fx=small_scale, fy=small_scale, interpolation=cv2.INTER_AREA)
        if small_scale < 1
        else photo_rgb
    )
    landmarks = detect_landmarks68(small, upsample=1)
    if landmarks is None:
        raise ValueError(f"dlib found no face in face photo {face_id!r}")
    left, right = (p / small_scale for p in eye_centres(landmarks))
    iod = float(np.linalg.norm(right - left))
    scale = 0.30 * size / iod
    photo = photo_rgb
    if scale < 1.0:
        photo = cv2.resize(photo_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sx, sy = photo.shape[1] / width, photo.shape[0] / height
        left, right = left * (sx, sy), right * (sx, sy)
    src = np.float32([left, right])
    dst = np.float32([[0.35 * size, 0.40 * size], [0.65 * size, 0.40 * size]])
    matrix, _ = cv2.estimateAffinePartial2D(src, dst)
    if matrix is None:  # two points always determine a similarity; guard anyway
        raise ValueError(f"cannot align face photo {face_id!r}")
    canvas = cv2.warpAffine(
        photo, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    canvas = _apply_variant(canvas, dict(variant or {}))
    found = detect_landmarks68(canvas, upsample=0)
    if found is None:
        found = detect_landmarks68(canvas, upsample=1)
    if found is None:
        raise ValueError(f"dlib found no face on the {size}x{size} canvas of face photo {face_id!r}")
    return canvas, found


# --- face basis -------------------------------------------------------------------------------------------------
@dataclass
class FaceBasis:
    """Per-subject rendering basis: canvas, landmarks, per-AU displacement fields and shading maps.

    ``fields[au]`` is (2, S, S) float32 in pixels at intensity 1 (x then y); ``shading[au]`` is (S, S) float32
    multiplicative shading at intensity 1 (e.g. -0.06 = 6% darker) or None. ``right_weight`` is a soft 0→1 step
    across the facial midline (1 on the image-right half, the subject's left), used for one-sided AUs.
    """

    canvas: np.ndarray
    landmarks: np.ndarray
    iod: float
    midline_x: float
    fields: dict[int, np.ndarray]
    shading: dict[int, np.ndarray | None]
    right_weight: np.ndarray


def control_points(landmarks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """68 landmarks + the virtual points of :data:`VIRTUAL_GROUPS` (82×2), the IOD and the midline x."""
    lm = landmarks.astype(np.float64)
    left_eye, right_eye = eye_centres(lm)
    iod = float(np.linalg.norm(right_eye - left_eye))
    ex = (right_eye - left_eye) / iod
    ey = np.array([-ex[1], ex[0]])  # points down the face
    mid_x = float((lm[27, 0] + lm[8, 0]) / 2)
    virtual = [
        lm[21] - 0.35 * iod * ey,
        lm[22] - 0.35 * iod * ey,
        lm[18] - 0.35 * iod * ey,
        lm[25] - 0.35 * iod * ey,
        (lm[21] + lm[22] + 2 * lm[27]) / 4,
        left_eye + 0.45 * iod * ey,
        right_eye + 0.45 * iod * ey,
        left_eye + 0.75 * iod * ey,
        right_eye + 0.75 * iod * ey,
        (lm[31] + lm[48]) / 2 - 0.08 * iod * ex,
        (lm[35] + lm[54]) / 2 + 0.08 * iod * ex,
        lm[48] - 0.12 * iod * ex,
        lm[54] + 0.12 * iod * ex,
        (lm[57] + lm[8]) / 2,
    ]
    return np.vstack([lm, np.array(virtual)]), iod, mid_x


def _resolve(ref: PointRef) -> tuple[int, ...]:
    return VIRTUAL_GROUPS[ref] if isinstance(ref, str) else (ref,)


def au_displacements(
    au: int, points: np.ndarray, iod: float, mid_x: float, rng: np.random.Generator, var: float
) -> dict[int, np.ndarray]:
    """Control-point index → displacement in px for one AU at intensity 1, with subject variability.

    Variability (drawn once per subject and AU): a shared log-normal gain (σ = var), small per-point gains
    (σ = 0.2·var), a left/right asymmetry on the image-left half (σ = var) and a rotation of the vectors
    (σ = 10°·var/0.25).
    """
    gain = math.exp(rng.normal(0, var))
    asym = math.exp(rng.normal(0, var))
    angle = math.radians(rng.normal(0, 10.0 * var / 0.25))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    out: dict[int, np.ndarray] = {}
    for refs, dx, dy in AU_SPECS[au]:
        for ref in refs:
            for idx in _resolve(ref):
                offset = points[idx, 0] - mid_x
                side = 0.0 if abs(offset) < MIDLINE_TOL_IOD * iod else math.copysign(1.0, offset)
                vec = np.array([side * dx, dy]) * iod * gain * math.exp(rng.normal(0, 0.2 * var))
                if side < 0:
                    vec = vec * asym
                out[idx] = rot @ vec
    return out


def _border_ring(size: int, count: int = 32) -> np.ndarray:
    t = np.linspace(0, 4, count, endpoint=False)
    edge = size - 1.0
    pts = []
    for v in t:
        side, frac = int(v), v - int(v)
        pts.append(
            [(frac * edge, 0.0), (edge, frac * edge), ((1 - frac) * edge, edge), (0.0, (1 - frac) * edge)][
                side
            ]
        )
    return np.array(pts)


def kernel_field(
    centres: np.ndarray, values: np.ndarray, query: np.ndarray, sigma: float, kappa: float
) -> np.ndarray:
    """Normalised Gaussian-kernel regression F(x) = Σ kᵢ dᵢ / (Σ kᵢ + κ) at ``query`` points.

    Written by hand because the κ "no-motion" prior (which keeps the field bounded by max|dᵢ| and smooth
    between lip landmarks a few px apart) is not offered by scipy's RBF interpolators; exact RBF overshoots.
    """
    d2 = ((query[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / (2 * sigma * sigma))
    return (k @ values) / (k.sum(1, keepdims=True) + kappa)


def displacement_field(
    moving: dict[int, np.ndarray], points: np.ndarray, size: int, iod: float
) -> np.ndarray:
    """Dense (2, S, S) float32 field of one AU from its moving control points (other points anchor at 0)."""
    idx = np.array(sorted(moving))
    mov_pts = points[idx]
    mov_d = np.array([moving[i] for i in idx])
    anchors = np.vstack([np.delete(points, idx, axis=0), _border_ring(size)])
    near = np.min(np.linalg.norm(anchors[:, None] - mov_pts[None], axis=-1), axis=1) < 0.5
    anchors = anchors[~near]
    centres = np.vstack([mov_pts, anchors])
    values = np.vstack([mov_d, np.zeros((len(anchors), 2))])
    sigma = FIELD_SIGMA_IOD * iod
    at_points = kernel_field(centres, values, mov_pts, sigma, FIELD_KAPPA)
    want = np.linalg.norm(mov_d, axis=1)
    got = np.linalg.norm(at_points, axis=1)
    ok = (want > 1e-6) & (got > 1e-9)
    gain = float(np.median(want[ok] / got[ok])) if ok.any() else 1.0
    coarse = int(math.ceil(size / FIELD_COARSE))
    g = (np.arange(coarse) + 0.5) * (size / coarse) - 0.5
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    flow = kernel_field(centres, values, grid, sigma, FIELD_KAPPA) * gain
    out = np.empty((2, size, size), dtype=np.float32)
    for c in range(2):
        out[c] = cv2.resize(
            flow[:, c].reshape(coarse, coarse).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
        )
    return out


def _polyline(img: np.ndarray, pts: Sequence[np.ndarray], thickness: int, value: float = 1.0) -> None:
    arr = np.round(np.array(pts) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [arr], False, value, thickness=thickness, lineType=cv2.LINE_AA, shift=4)


def _bezier(a: np.ndarray, ctrl: np.ndarray, b: np.ndarray, n: int = 12) -> list[np.ndarray]:
    t = np.linspace(0, 1, n)[:, None]
    return list((1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t**2 * b)


def shading_map(
    au: int, points: np.ndarray, iod: float, size: int, rng: np.random.Generator, var: float
) -> np.ndarray | None:
    """Multiplicative shading of one AU at intensity 1 (wrinkles, folds, the dark lip gap), or None."""
    p = points.astype(np.float64)
    left_eye, right_eye = eye_centres(p)
    ex = (right_eye - left_eye) / np.linalg.norm(right_eye - left_eye)
    ey = np.array([-ex[1], ex[0]])
    thick = max(1, int(round(0.02 * iod)))
    img = np.zeros((size, size), dtype=np.float32)
    amp = -0.06 * math.exp(rng.normal(0, 0.5 * var))
    blur = 0.025 * iod

    def nasolabial() -> None:
        for ala, corner, sgn in ((31, 48, -1), (35, 54, 1)):
            a = p[ala] + sgn * 0.1 * iod * ex
            b = p[corner] + sgn * 0.1 * iod * ex + 0.05 * iod * ey
            _polyline(img, _bezier(a, (a + b) / 2 + sgn * 0.07 * iod * ex, b), thick)

    if au == 1:
        for h in (0.42, 0.58):
            _polyline(img, [p[i] - h * iod * ey for i in (20, 21, 22, 23)], thick)
    elif au == 2:
        for h in (0.38, 0.52):
            _polyline(img, [p[i] - h * iod * ey for i in (17, 18, 19)], thick)
            _polyline(img, [p[i] - h * iod * ey for i in (24, 25, 26)], thick)
    elif au == 4:
        centre = (p[21] + p[22]) / 2
        for s in (-1, 1):
            x = centre + s * 0.08 * iod * ex
            _polyline(img, [x - 0.08 * iod * ey, x + 0.1 * iod * ey], thick)
    elif au == 6:
        for corner, sgn in ((36, -1), (45, 1)):
            start = p[corner] + sgn * 0.1 * iod * ex
            for deg in (-25, 0, 25):
                r = math.radians(deg)
                direction = sgn * math.cos(r) * ex + math.sin(r) * ey
                _polyline(img, [start, start + 0.15 * iod * direction], thick)
        nasolabial()
    elif au == 7:
        for ids in ((41, 40), (47, 46)):
            _polyline(img, [p[i] + 0.06 * iod * ey for i in ids], thick)
        amp *= 0.5
    elif au == 9:
        for i in (28, 29):
            _polyline(img, [p[i] - 0.08 * iod * ex, p[i] + 0.08 * iod * ex], thick)
    elif au in (10, 12):
        nasolabial()
    elif au == 14:
        for i in VIRTUAL_GROUPS["dimple"]:
            cv2.circle(
                img, tuple(int(v) for v in np.round(p[i])), max(1, int(0.03 * iod)), 1.0, -1, cv2.LINE_AA
            )
    elif au == 15:
        for corner, sgn in ((48, -1), (54, 1)):
            _polyline(img, [p[corner], p[corner] + sgn * 0.06 * iod * ex + 0.18 * iod * ey], thick)
    elif au == 17:
        chin = p[VIRTUAL_GROUPS["chin"][0]]
        for _ in range(14):
            spot = chin + rng.normal(0, 0.07 * iod, size=2)
            cv2.circle(
                img, tuple(int(v) for v in np.round(spot)), max(1, int(0.015 * iod)), 1.0, -1, cv2.LINE_AA
            )
        amp *= 0.7
    elif au in (25, 26):
        upper, lower = p[[61, 62, 63]], p[[67, 66, 65]]
        gap = [p[60], *((upper + lower) / 2), p[64]]
        _polyline(img, gap, max(1, int(round((0.025 if au == 25 else 0.04) * iod))))
        amp = -0.35 if au == 25 else -0.45
        blur = 0.012 * iod
    else:
        return None
    img = cv2.GaussianBlur(img, (0, 0), blur)
    peak = float(img.max())
    return img * (amp / peak) if peak > 0 else None


def build_face_basis(
    face_rgb: np.ndarray, landmarks68: np.ndarray, rng: np.random.Generator, params: dict[str, Any]
) -> FaceBasis:
    """Per-subject displacement fields B_au and shading maps H_au for every supported AU (one-off, ~0.5 s).

    ``face_rgb`` is the square identity canvas and ``landmarks68`` its dlib landmarks; ``params`` needs the
    keys of :data:`BASIS_PARAM_KEYS` (``subject_var`` drives the per-subject variability).
    """
    size = face_rgb.shape[0]
    if face_rgb.shape[:2] != (size, size):
        raise ValueError(f"face canvas must be square, got {face_rgb.shape}")
    var = float(params["subject_var"])
    points, iod, mid_x = control_points(landmarks68)
    fields, shading = {}, {}
    for au in SUPPORTED_AUS:
        moving = au_displacements(au, points, iod, mid_x, rng, var)
        fields[au] = displacement_field(moving, points, size, iod)
        shading[au] = shading_map(au, points, iod, size, rng, var)
    xs = np.arange(size, dtype=np.float32)
    right_weight = 1.0 / (1.0 + np.exp(-(xs - mid_x) / (0.08 * iod)))
    return FaceBasis(
        canvas=face_rgb.astype(np.float32),
        landmarks=landmarks68.astype(np.float32),
        iod=iod,
        midline_x=mid_x,
        fields=fields,
        shading=shading,
        right_weight=np.broadcast_to(right_weight[None, :], (size, size)).astype(np.float32),
    )


# --- rendering --------------------------------------------------------------------------------------------------
def _side_weight(basis: FaceBasis, side: str | None) -> np.ndarray | float:
    """Spatial weight of a one-sided AU: full on the named side of the subject, LATERAL_RESIDUAL on the other."""
    if side is None:
        return 1.0
    # Subject's left is the image right in a (non-mirrored) frontal photo.
    on_side = basis.right_weight if side == "L" else 1.0 - basis.right_weight
    return LATERAL_RESIDUAL + (1.0 - LATERAL_RESIDUAL) * on_side


def ou_process(rng: np.random.Generator, n: int, sd: float, tau_frames: float) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck samples (standard deviation ``sd``, correlation time ``tau_frames``)."""
    if sd <= 0 or n == 0:
        return np.zeros(n)
    rho = math.exp(-1.0 / max(tau_frames, 1e-6))
    out = np.empty(n)
    out[0] = rng.normal(0, sd)
    innovations = rng.normal(0, sd * math.sqrt(1 - rho * rho), size=n)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + innovations[i]
    return out


def head_motion(clip: ClipPlan) -> np.ndarray:
    """Per-frame (tx, ty, rotation rad, scale) of the head: OU jitter about the canvas centre plus linear drift."""
    rng = np.random.default_rng([clip.seed, _TAG_MOTION])
    nz, n = clip.nuisance, clip.n_frames
    tau = nz.jitter_tau_s * clip.fps
    tx, ty = ou_process(rng, n, nz.jitter_px, tau), ou_process(rng, n, nz.jitter_px, tau)
    rot = ou_process(rng, n, math.radians(nz.jitter_rot_deg), tau)
    scale = 1.0 + ou_process(rng, n, nz.jitter_scale, tau)
    angle = rng.uniform(0, 2 * math.pi)
    length = nz.drift_px * rng.uniform(0.5, 1.0)
    ramp = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(n)
    tx = tx + length * math.cos(angle) * ramp
    ty = ty + length * math.sin(angle) * ramp
    return np.stack([tx, ty, rot, scale], axis=1)


def exposure_gain(clip: ClipPlan) -> np.ndarray:
    """Per-frame brightness gain: mains flicker aliased to 3-12 Hz plus a slow exposure wander."""
    rng = np.random.default_rng([clip.seed, _TAG_FLICKER])
    t = np.arange(clip.n_frames) / clip.fps
    amp = clip.nuisance.flicker
    fast = amp * np.sin(2 * math.pi * rng.uniform(3, 12) * t + rng.uniform(0, 2 * math.pi))
    slow = 0.5 * amp * np.sin(2 * math.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 2 * math.pi))
    return 1.0 + fast + slow


def render_clip(
    basis: FaceBasis, clip_plan: ClipPlan, frames: Sequence[int] | None = None
) -> list[np.ndarray]:
    """Render the clip's frames (all, or the 0-based ``frames``) as RGB uint8 arrays, one ``cv2.remap`` each.

    img_t = warp(base · (1 + a(t) Σ Iₖ Hₖ)) · g(t) + noise, with the warp map J_t⁻¹(x) − a(t) Σ Iₖ Bₖ(x).
    Every frame is a function of (basis, clip plan, frame index) only, so a subset equals the full render.
    """
    size = basis.canvas.shape[0]
    indices = range(clip_plan.n_frames) if frames is None else frames
    field_sum = np.zeros((2, size, size), dtype=np.float32)
    shade_sum = np.zeros((size, size), dtype=np.float32)
    for action in clip_plan.actions:
        if action.au not in basis.fields:
            raise ValueError(f"clip {clip_plan.subject}/{clip_plan.clip}: AU{action.au} is not supported")
        weight = _side_weight(basis, action.side)
        field_sum += action.intensity * weight * basis.fields[action.au]
        if basis.shading[action.au] is not None:
            shade_sum += action.intensity * weight * basis.shading[action.au]
    envelope = clip_plan.envelope()
    motion = head_motion(clip_plan)
    gain = exposure_gain(clip_plan)
    xs, ys = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    centre = (size - 1) / 2.0
    sigma = clip_plan.nuisance.noise_sigma
    out = []
    for i in indices:
        if not 0 <= i < clip_plan.n_frames:
            raise IndexError(f"frame index {i} outside clip {clip_plan.subject}/{clip_plan.clip}")
        a = float(envelope[i])
        source = basis.canvas * (1.0 + a * shade_sum)[..., None] if a > 0 else basis.canvas
        tx, ty, rot, scale = motion[i]
        cos_r, sin_r = math.cos(-rot) / scale, math.sin(-rot) / scale
        dx, dy = xs - (centre + tx), ys - (centre + ty)
        map_x = cos_r * dx - sin_r * dy + centre - a * field_sum[0]
        map_y = sin_r * dx + cos_r * dy + centre - a * field_sum[1]
        frame = cv2.remap(
            source,
            map_x.astype(np.float32),
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        frame *= gain[i]
        if sigma > 0:
            noise_rng = np.random.default_rng([clip_plan.seed, _TAG_NOISE, i])
            frame += sigma * noise_rng.standard_normal(frame.shape, dtype=np.float32)
        out.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    return out


# --- node -------------------------------------------------------------------------------------------------------
def face_fingerprint(image: np.ndarray) -> str:
    """SHA-256 of a photo's decoded pixels and shape (changes when the face file changes)."""
    digest = hashlib.sha256(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    import dlib

    return {"dlib": str(dlib.__version__), "opencv": str(cv2.__version__), "numpy": str(np.__version__)}


def clip_key(cfg: dict[str, Any], fingerprint: str, subject: SubjectPlan, clip: ClipPlan) -> str:
    """Content key of one clip: hash of everything its frames depend on."""
    payload = {
        "generator_version": GENERATOR_VERSION,
        "libraries": _library_versions(),
        "face": fingerprint,
        "basis_params": {k: cfg[k] for k in BASIS_PARAM_KEYS},
        "jpeg_quality": cfg["jpeg_quality"],
        "subject": asdict(subject),
        "clip": asdict(clip),
    }
    return hashlib.sha256(json.dumps(_jsonable(payload), sort_keys=True).encode()).hexdigest()


class _BasisCache:
    """Builds a subject's canvas and basis on first use and keeps only the most recent one (clips come in
    subject order), so memory stays at one subject and fully reused subjects cost nothing."""

    def __init__(self, plan: SyntheticPlan, photos: FacePhotos) -> None:
        self._plan = plan
        self._photos = photos
        self._subjects = {s.folder: s for s in plan.subjects}
        self._current: tuple[str, FaceBasis] | None = None

    def get(self, subject: str) -> FaceBasis:
        if self._current is None or self._current[0] != subject:
            plan = self._subjects[subject]
            canvas, landmarks = build_identity_canvas(
                self._photos.images[plan.face_id],
                int(self._plan.params["canvas_size"]),
                plan.face_id,
                dict(plan.variant),
            )
            rng = np.random.default_rng([plan.seed, _TAG_BASIS])
            self._current = (subject, build_face_basis(canvas, landmarks, rng, self._plan.params))
        return self._current[1]


def _render_planned(cache: _BasisCache, clip: ClipPlan) -> list[np.ndarray]:
    return render_clip(cache.get(clip.subject), clip)


def readme_text(plan: SyntheticPlan, photos: FacePhotos, counts: dict[str, int], n_frames: int) -> str:
    """README.md of the written dataset: what it is, parameters, fallback note, attribution."""
    cfg = plan.params
    lines = [
        "# Synthetic micro-expression dataset (microexpr)",
        "",
        "Generated by `microexpr` (`microexpr.data.synthetic`, generator version "
        f"{GENERATOR_VERSION}) in the on-disk layout of CASME II: `{FRAMES_FOLDER}/subXX/<clip>/img<N>.jpg` "
        f"(onset..offset frames only) and `{ANNOTATION_FILE}`.",
        "Each clip warps a real neutral face photograph with FACS action-unit displacement fields and shading "
        "(onset → apex → offset, raised cosine) plus head jitter, drift, flicker and sensor noise. Labels follow "
        "the CASME II AU criteria. Scores on this set say that a pipeline works; they do not transfer to real data.",
        "",
        f"- subjects: {len(plan.subjects)}, clips: {len(plan.clips)}, frames: {n_frames}, fps: {cfg['fps']}",
        f"- clips per class: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}",
        f"- face photographs: {photos.provenance}",
        f"- parameters: `{json.dumps(_jsonable(cfg), sort_keys=True)}`",
        "- regenerate: `kedro run --pipelines=ingest` (clips whose inputs did not change are reused); this folder "
        "is owned by the generator (marker file `.microexpr-synthetic`) and stale clips are deleted.",
    ]
    if plan.fallback:
        lines += [
            "",
            f"**Fallback faces:** no faces folder was configured, so the {len(plan.subjects)} subjects are derived "
            f"from only {len(photos.images)} public-domain photograph(s) (mirrored, re-toned, rescaled variants). "
            "Identities therefore leak across leave-one-subject-out folds: use this set for smoke tests only. "
            "Configure the London face set (docs/datasets.md) for a meaningful synthetic benchmark.",
        ]
    if photos.attribution:
        lines += ["", "## Attribution", "", photos.attribution]
    return "\n".join(lines) + "\n"


def generate_synthetic_dataset(
    dataset: str, params: dict[str, Any], face_photos: FacePhotos
) -> Iterator[SyntheticChunk]:
    """Kedro node (generator): one lazy :class:`ClipRender` per clip, then a :class:`SyntheticManifest`.

    Yields a single :class:`SyntheticSkipped` when ``dataset`` is not ``"synthetic"``. Rendering happens only
    when the writer calls ``chunk.render()``, so clips whose key is already on disk cost nothing.
    """
    if dataset != "synthetic":
        yield SyntheticSkipped(
            reason=f"dataset is {dataset!r}, not 'synthetic': the synthetic set is not generated"
        )
        return
    cfg = resolve_params(params)
    plan = plan_dataset(cfg, list(face_photos.images), face_photos.fallback)
    used = sorted({s.face_id for s in plan.subjects})
    fingerprints = {fid: face_fingerprint(face_photos.images[fid]) for fid in used}
    subjects = {s.folder: s for s in plan.subjects}
    cache = _BasisCache(plan, face_photos)
    annotation = plan.annotation_frame()
    clips_meta = []
    for index, clip in enumerate(plan.clips):
        subject = subjects[clip.subject]
        key = clip_key(cfg, fingerprints[subject.face_id], subject, clip)
        clips_meta.append(
            {
                "subject": clip.subject,
                "clip": clip.clip,
                "n_frames": clip.n_frames,
                "emotion": clip.emotion,
                "key": key,
            }
        )
        yield ClipRender(
            subject=clip.subject,
            clip=clip.clip,
            index=index,
            total=len(plan.clips),
            frame_numbers=clip.frame_numbers,
            annotation=clip.annotation_row(cfg["missing_apex_cell"]),
            key=key,
            jpeg_quality=int(cfg["jpeg_quality"]),
            render=functools.partial(_render_planned, cache, clip),
        )
    counts = dict(sorted(Counter(c.emotion for c in plan.clips).items()))
    n_frames = sum(c.n_frames for c in plan.clips)
    yield SyntheticManifest(
        annotation=annotation,
        params=cfg,
        generator_version=GENERATOR_VERSION,
        fallback=plan.fallback,
        face_provenance=face_photos.provenance,
        attribution=face_photos.attribution,
        subjects={s.folder: s.face_id for s in plan.subjects},
        clips=clips_meta,
        counts_per_class=counts,
        counts_per_subject=dict(sorted(Counter(c.subject for c in plan.clips).items())),
        n_frames=n_frames,
        readme=readme_text(plan, face_photos, counts, n_frames),
    )
