"""Is the synthetic set learnable but not trivial? Generate it, then score a linear flow baseline under LOSO.

Baseline: Farneback optical flow from the onset to the annotated apex frame (the clip's middle frame when the
apex cell is missing) on a face crop taken from the onset frame's dlib landmarks, mean flow subtracted (crude
global-motion compensation), pooled to 8×8×2, standardised; logistic regression (C = 0.1) under
leave-one-subject-out. Reports UF1 (macro F1) on the pooled predictions, chance ≈ 0.2 for 5 classes.

Usage (London faces from MICROEXPR_FACES, else ../shared/faces/london beside the checkout):
    PYTHONPATH=src python benchmarks/synthetic_learnability.py [--subjects 16] [--canvas 320]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from microexpr.data.synthetic import (
    ANNOTATION_FILE,
    FRAMES_FOLDER,
    detect_landmarks68,
    generate_synthetic_dataset,
)
from microexpr.datasets.face_photos import FacePhotoFolder
from microexpr.datasets.synthetic_writer import SyntheticCasme2Dataset

DEFAULT_FACES = str(Path(__file__).resolve().parents[2] / "shared" / "faces" / "london")
CROP = 64
POOL = 8


def faces_folder() -> Path | None:
    """MICROEXPR_FACES, else the shared London folder; None when neither exists."""
    for candidate in (os.environ.get("MICROEXPR_FACES"), DEFAULT_FACES):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def face_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Landmark box widened by 5% on each side and 25% on top (forehead), clipped to the image."""
    x0, y0 = landmarks.min(axis=0)
    x1, y1 = landmarks.max(axis=0)
    w, h = x1 - x0, y1 - y0
    x0, x1, y0 = x0 - 0.05 * w, x1 + 0.05 * w, y0 - 0.25 * h
    return (
        max(0, int(x0)),
        max(0, int(y0)),
        min(shape[1], int(np.ceil(x1))),
        min(shape[0], int(np.ceil(y1))),
    )


def onset_apex_features(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """Pooled Farneback flow (onset → apex) on the onset landmark crop, mean flow removed; 2·POOL² values."""
    landmarks = detect_landmarks68(onset, upsample=0)
    if landmarks is None:
        raise RuntimeError("dlib found no face on a rendered onset frame")
    x0, y0, x1, y1 = face_box(landmarks, onset.shape)
    crops = [
        cv2.resize(
            cv2.cvtColor(f[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), (CROP, CROP), interpolation=cv2.INTER_AREA
        )
        for f in (onset, apex)
    ]
    flow = cv2.calcOpticalFlowFarneback(crops[0], crops[1], None, 0.5, 3, 9, 3, 5, 1.1, 0)
    flow -= flow.reshape(-1, 2).mean(axis=0)
    return cv2.resize(flow, (POOL, POOL), interpolation=cv2.INTER_AREA).ravel()


def write_dataset(root: Path, params: dict, photos: object) -> float:
    """Generate and write the set under ``root`` with the project's Kedro writer; return the seconds taken."""
    writer = SyntheticCasme2Dataset(str(root))
    start = time.perf_counter()
    for chunk in generate_synthetic_dataset("synthetic", params, photos):
        writer.save(chunk)
    return time.perf_counter() - start


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise RuntimeError(f"cannot read frame {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def disk_features(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and subject groups from the written set, read back as a user's CASME II copy would be
    (coding sheet + onset/apex JPEGs; a missing apex cell falls back to the clip's middle frame)."""
    sheet = pd.read_excel(root / ANNOTATION_FILE, dtype=object)
    features, labels, groups = [], [], []
    for row in sheet.itertuples(index=False):
        subject, clip, onset, apex, offset = row[0], row[1], int(row[3]), row[4], int(row[5])
        apex = int(apex) if str(apex).strip().isdigit() else (onset + offset) // 2
        folder = root / FRAMES_FOLDER / f"sub{int(subject):02d}" / str(clip)
        features.append(
            onset_apex_features(read_rgb(folder / f"img{onset}.jpg"), read_rgb(folder / f"img{apex}.jpg"))
        )
        labels.append(str(row[8]))
        groups.append(int(subject))
    return np.array(features), np.array(labels), np.array(groups)


def loso_uf1(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Macro F1 of pooled leave-one-subject-out predictions of a standardised logistic regression."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    predicted = cross_val_predict(model, features, labels, groups=groups, cv=LeaveOneGroupOut())
    return float(f1_score(labels, predicted, average="macro"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--canvas", type=int, default=320)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    folder = faces_folder()
    if folder is None:
        sys.stderr.write(f"no faces folder: set MICROEXPR_FACES or provide {DEFAULT_FACES}\n")
        return 2
    photos = FacePhotoFolder(str(folder)).load()
    params = {"n_subjects": args.subjects, "canvas_size": args.canvas}
    if args.seed is not None:
        params["seed"] = args.seed
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        write_s = write_dataset(root, params, photos)
        manifest = SyntheticCasme2Dataset(str(root)).load()
        start = time.perf_counter()
        features, labels, groups = disk_features(root)
        feature_s = time.perf_counter() - start
    uf1 = loso_uf1(features, labels, groups)
    print(  # noqa: T201 - a benchmark reports on stdout
        f"subjects={manifest['n_subjects']} clips={manifest['n_clips']} frames={manifest['n_frames']} "
        f"canvas={args.canvas} classes={manifest['counts_per_class']}\n"
        f"generation (plan, canvases, bases, render, JPEG write) {write_s:.1f} s "
        f"({1000 * write_s / manifest['n_frames']:.2f} ms/frame); features {feature_s:.1f} s\n"
        f"LOSO logistic regression on onset->apex Farneback flow: UF1 = {uf1:.3f} (chance ~0.2)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
