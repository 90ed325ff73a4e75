"""How far does `microexpr predict`'s apex spotting land from the annotated apex, and does a video copy agree?

Renders synthetic clips (London faces from MICROEXPR_FACES, else the bundled public-domain fallback faces, no
sensor noise), writes each as a JPEG folder and as an mp4v .mp4, spots the apex on both with the card settings of
conf/base (microexpr.inference.clip.choose_key_frames) and prints, per clip, the annotated and the spotted apex
positions (0-based, from the first frame) with the distance in frames.

Usage:
    PYTHONPATH=src python benchmarks/apex_spotting.py [--clips 8] [--canvas 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from microexpr.dag.final_model import preprocessing_of
from microexpr.data import synthetic as syn
from microexpr.datasets.face_photos import FacePhotoFolder, fallback_photos
from microexpr.inference.clip import choose_key_frames, open_clip

PROJECT = Path(__file__).resolve().parents[1]


def photos():
    folder = os.environ.get("MICROEXPR_FACES")
    return FacePhotoFolder(path=folder).load() if folder and Path(folder).is_dir() else fallback_photos()


def write(frames: list[np.ndarray], numbers: list[int], root: Path) -> tuple[Path, Path]:
    folder = root / "frames"
    folder.mkdir(parents=True)
    for frame, number in zip(frames, numbers, strict=True):
        cv2.imwrite(str(folder / f"img{number}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    video = root / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return folder, video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--canvas", type=int, default=256)
    args = parser.parse_args()
    pre = yaml.safe_load((PROJECT / "conf/base/parameters_preprocess.yml").read_text())["preprocess"]
    preprocessing = preprocessing_of(["face_alignment", "key_frames"], pre)
    faces = photos()
    params = syn.resolve_params({"n_subjects": args.clips, "clips_per_subject": [1, 1], "canvas_size": args.canvas,
                                 "seed": 0})
    plan = syn.plan_dataset(params, list(faces.images), fallback=faces.fallback)
    subjects = {s.folder: s for s in plan.subjects}
    distances, video_distances = [], []
    print(f"{'clip':<24} {'frames':>6} {'annotated':>9} {'folder':>6} {'|d|':>4} {'video':>5} {'|d|':>4}")  # noqa: T201
    for clip in plan.clips[: args.clips]:
        subject = subjects[clip.subject]
        canvas, landmarks = syn.build_identity_canvas(faces.images[subject.face_id], args.canvas, subject.face_id)
        basis = syn.build_face_basis(canvas, landmarks, np.random.default_rng(0), params)
        clip = replace(clip, nuisance=replace(clip.nuisance, noise_sigma=0.0))
        frames = syn.render_clip(basis, clip)
        with tempfile.TemporaryDirectory() as tmp:
            folder, video = write(frames, list(clip.frame_numbers), Path(tmp))
            spotted = []
            for source in (folder, video):
                opened = open_clip(source, Path(tmp) / f"scratch_{source.name}")
                key = choose_key_frames(opened, preprocessing, "synthetic")
                spotted.append(opened.frame_numbers.index(key.apex))
        distances.append(abs(spotted[0] - clip.apex_index))
        video_distances.append(abs(spotted[1] - clip.apex_index))
        print(f"{clip.subject + '/' + clip.clip:<24} {clip.n_frames:>6} {clip.apex_index:>9} {spotted[0]:>6} "  # noqa: T201
              f"{distances[-1]:>4} {spotted[1]:>5} {video_distances[-1]:>4}")
    for name, values in (("folder", distances), ("video", video_distances)):
        print(f"{name}: median |spotted - annotated| {np.median(values):.1f} frames, within 3 frames: "  # noqa: T201
              f"{sum(d <= 3 for d in values)}/{len(values)}")


if __name__ == "__main__":
    main()
