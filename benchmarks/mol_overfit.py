"""Can MOL fit a fixed batch? Cross-entropy only, no augmentation, no flow or landmark heads, on real quick clips.

A diagnostic for "the quick demo does not learn" (docs/models.md, MOL "Quick demo"): if the network cannot fit a
handful of fixed clips, the model or its input is broken; if it can but needs many steps, the demo is simply too
short. Prints the loss and the eval-mode training accuracy every ``--every`` steps.

Usage (after ``kedro run --pipelines=mol --env quick`` built ``05_model_input``):
    PYTHONPATH=src python benchmarks/mol_overfit.py --clips 16 --steps 300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from microexpr.models import build_model
from microexpr.models.mol import subclip_frames
from microexpr.project import open_project

ROOT = Path(__file__).resolve().parents[1]


def fixed_clips(bundle: dict[str, np.ndarray], count: int, size: int, length: int) -> torch.Tensor:
    """Sub-clip 0 of the first ``count`` videos, centre-cropped to ``size``, as (N, 1, T, size, size) in [0, 1]."""
    frames = bundle["frames"]
    offset = (frames.shape[-1] - size) // 2
    clips = [frames[i, subclip_frames(int(bundle["n_frames"][i]), length, 0), offset:offset + size, offset:offset + size]
             for i in range(count)]
    return torch.from_numpy(np.stack(clips)).float().unsqueeze(1) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="quick", help="the env whose stored mol.model_input is read")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.0, help="the MER head's dropout (code: 0.5)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    bundle = open_project(args.env, start=ROOT).catalog().load("mol.model_input")
    video = fixed_clips(bundle, args.clips, args.image_size, 8)
    labels = torch.from_numpy(bundle["y"][:args.clips]).long()
    counts = np.bincount(labels.numpy(), minlength=len(bundle["classes"]))
    prior = counts[counts > 0] / counts.sum()
    sys.stdout.write(f"{args.clips} clips, labels {labels.tolist()}; loss of the label prior "
                     f"{float(-(prior * np.log(prior)).sum()):.3f}\n")
    model = build_model("mol", len(bundle["classes"]), image_size=args.image_size, flownet_width=8,
                        flow_head=False, landmark_head=False, mer_dropout=args.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for step in range(args.steps):
        model.train()
        loss = F.cross_entropy(model(video=video)["logits"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.every == 0 or step == args.steps - 1:
            model.eval()
            with torch.no_grad():
                accuracy = float((model(video=video)["logits"].argmax(1) == labels).float().mean())
            sys.stdout.write(f"step {step}: loss {loss.item():.4f}, training accuracy (eval mode) {accuracy:.3f}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
