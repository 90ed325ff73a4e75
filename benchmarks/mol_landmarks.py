"""MOL's per-frame landmark targets: detecting the face on every frame vs detecting once per clip and tracking.

For the first N clips of a sample index (e.g. the quick synthetic set's), both modes of
``microexpr.features.recipes.frame_landmarks`` run on the clip's raw frames; prints seconds per clip for each, the
speed-up, and how far the tracked landmarks lie from the per-frame detections (NME: mean point distance ÷ the
inter-ocular distance, outer eye corners 36–45, of the detection). The synthetic set stores no per-frame ground
truth, so this measures agreement with per-frame detection, not accuracy against truth.

Usage:
    python benchmarks/mol_landmarks.py data/quick/03_primary/sample_index.parquet [--clips 12]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from microexpr.features import recipes


def report(line: str) -> None:
    """A benchmark reports on stdout."""
    sys.stdout.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", help="sample_index.parquet (its frame paths are read)")
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args()
    samples = [recipes.sample_record(row) for _, row in pd.read_parquet(args.index).head(args.clips).iterrows()]
    params = {"detect_max_side": 320, "upsample": 0}
    seconds = {"detect": 0.0, "track": 0.0}
    errors, frames_total = [], 0
    for sample in samples:
        frames = [recipes.read_frame(sample, i) for i in range(len(sample["frame_paths"]))]
        onset = recipes.position_of(sample, sample["onset"])
        found = {}
        for mode in ("detect", "track"):
            start = time.perf_counter()
            found[mode] = recipes.frame_landmarks(frames, onset, {**params, "landmarks": mode})
            seconds[mode] += time.perf_counter() - start
        frames_total += len(frames)
        for i, detected in found["detect"].items():
            tracked = found["track"].get(i)
            if detected is not None and tracked is not None:
                distance = np.linalg.norm(detected[45] - detected[36])
                errors.append(np.linalg.norm(detected - tracked, axis=1).mean() / distance)
    n = len(samples)
    errors = np.asarray(errors)
    report(f"{n} clips, {frames_total} frames: detect every frame {seconds['detect'] / n:.2f} s/clip, "
          f"detect once + track {seconds['track'] / n:.2f} s/clip, speed-up {seconds['detect'] / seconds['track']:.1f}x")
    report(f"NME of tracked vs per-frame detected landmarks: mean {errors.mean():.4f}, median {np.median(errors):.4f}, "
          f"max {errors.max():.4f} ({errors.size} frames)")


if __name__ == "__main__":
    main()
