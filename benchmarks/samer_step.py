"""SAMER training throughput (samples/s): our training step vs the reference code's step, same run, same model.

OURS: ``microexpr.training.loop.train_fold`` itself, through SAMER's task (microexpr.models.samer.SamerTask) with
its default settings: the composites pre-decoded into one uint8 array in memory (the ``samer_inputs`` bundle),
Region Replacing (p 0.5) from the in-memory same-class pool, flip and random erasing on tensors, one base pass for
both halves, class-weighted label-smoothed CE of both heads + WSCL, AdamW step. Run in fp32 eager and fp32 with
``training.compile: true`` (its compile happens in the untimed warm-up fold). Its own per-epoch
``samples_per_s`` (training time only) is reported.

BASELINE: the reference's step (``dataset/dataset.py``, ``train.py``, ``loss.py``), written here: a
``torch.utils.data.Dataset`` whose ``__getitem__`` opens the sample's ``optical.jpg`` with PIL (``convert("RGB")``),
ToTensor → Resize((224, 224)) → RandomHorizontalFlip(0.5) → RandomErasing(scale 0.02–0.3, value random) →
Normalize(ImageNet), cuts eyes / mouth, and with probability 0.5 opens, transforms and cuts a random same-class
sample's JPEG for the mouth (Region Replacing), plus the 100-slot AU one-hot; a DataLoader with ``shuffle=True``,
``num_workers=0``; fp32, NCHW; forward, CrossEntropy(weight, label_smoothing 0.1) of both heads, the code's WSCL
(self-pair included), (1 − 0.3)·L_cls + 0.3·L_wscl, backward, AdamW(3e-3, wd 1e-5) step.

Both train the same freshly built SAMER (``build_model("samer", 5)``, 24.3 M parameters) at 224², same batch
size, device and thread count; one warm-up step each is excluded. The two sides alternate ``--rounds`` times
(baseline, ours, baseline, ours, …) and the headline is the median of the rounds' ours/baseline ratios at equal
precision (fp32); the compiled side runs once, after the rounds. Roofline: the FLOPs of one training step are counted (torch's FlopCounterMode, on the baseline's
warm-up step) and each side's achieved GFLOP/s is set beside a 2048² fp32 matmul's rate measured in the same run
(benchmarks/roofline.py). Composites: London face photos (MICROEXPR_FACES or ../shared/faces/london) as the grey channel
with random flow-like maps, else noise, written as 224² JPEGs (PIL's default quality 75, as the reference).

Usage:
    python benchmarks/samer_step.py [--batch-size 32] [--steps 4] [--device auto] [--threads N] [--no-compile]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from roofline import counted_gflop, matmul_peak_gflops, roofline_lines
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from microexpr.models import build_model
from microexpr.training.augment import IMAGENET_MEAN, IMAGENET_STD
from microexpr.training.loop import train_fold
from microexpr.training.runtime import resolve_runtime

DEFAULT_FACES = str(Path(__file__).resolve().parents[2] / "shared" / "faces" / "london")
SIZE = 224
CLASSES = 5
POOL = 40  # distinct composites on disk; samples beyond reuse them cyclically
AUS = (1, 2, 4, 6, 7, 12, 14, 15, 17)


def composites(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` (224, 224, 3) uint8 composites: a grey face photo (or noise) and two sparse blob maps."""
    folder = next((Path(p) for p in (os.environ.get("MICROEXPR_FACES"), DEFAULT_FACES) if p and Path(p).is_dir()),
                  None)
    files = sorted(folder.glob("*.jpg")) if folder else []
    out = []
    for i in range(count):
        if files:
            grey = cv2.imread(str(files[i % len(files)]), cv2.IMREAD_GRAYSCALE)
            side = min(grey.shape)
            y0, x0 = (grey.shape[0] - side) // 2, (grey.shape[1] - side) // 2
            grey = cv2.resize(grey[y0:y0 + side, x0:x0 + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        else:
            grey = rng.integers(0, 256, size=(SIZE, SIZE), dtype=np.uint8)
        maps = cv2.GaussianBlur(rng.uniform(0, 255, (SIZE, SIZE, 2)).astype(np.float32), (0, 0), 6)
        maps = np.where(maps > 1.5 * maps.mean(), maps, 0).clip(0, 255).astype(np.uint8)
        out.append(np.dstack([grey, maps]))
    return out


def au_string(rng: np.random.Generator) -> str:
    return "+".join(str(a) for a in rng.choice(AUS, size=rng.integers(1, 4), replace=False))


class ReferenceStyleDataset(Dataset):
    """The reference's ``MicroDataset`` in ``training`` mode (module docstring), over ``n`` samples."""

    def __init__(self, paths: list[Path], labels: np.ndarray, aus: list[str]) -> None:
        self.paths, self.labels, self.aus = paths, labels, aus
        self.resize = transforms.Compose([transforms.ToTensor(), transforms.Resize((SIZE, SIZE))])
        self.augment = transforms.Compose([transforms.RandomHorizontalFlip(0.5),
                                           transforms.RandomErasing(scale=(0.02, 0.3), value="random")])
        self.normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def __len__(self) -> int:
        return len(self.paths)

    def _open(self, i: int) -> torch.Tensor:
        image = self.resize(Image.open(self.paths[i]).convert("RGB"))
        return self.normalize(self.augment(image))

    @staticmethod
    def _one_hot(*cells: str) -> torch.Tensor:
        slots = torch.zeros(100)
        for cell in cells:
            for au in cell.split("+"):
                slots[int(au)] = 1
        return slots

    def __getitem__(self, i: int):
        image = self._open(i)
        half = image.shape[1] // 2
        eyes, mouth, partner_aus = image[:, :half], image[:, half:], self.aus[i]
        if random.random() > 0.5:
            same = np.flatnonzero(self.labels == self.labels[i])
            j = int(random.choice(same.tolist()))
            mouth, partner_aus = self._open(j)[:, half:], self.aus[j]
        return eyes, mouth, int(self.labels[i]), self._one_hot(self.aus[i], partner_aus)


def reference_wscl(features: torch.Tensor, au: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The code's WeightedSupCoL with its Jaccard targets (self-pair included, +1e-5 inside the log)."""
    sets = au.bool()
    union = (sets[:, None] | sets[None]).sum(-1)
    similarity = (sets[:, None] & sets[None]).sum(-1) / union
    mask = 1 - torch.eye(features.shape[0], device=features.device)
    exp_logits = torch.exp(features @ features.T / temperature) + 1e-5
    log_prob = -torch.log(exp_logits / (exp_logits * mask).sum(1, keepdim=True))
    return ((log_prob * similarity).sum(1) / similarity.sum(-1)).mean()


def baseline_samples_per_s(paths: list[Path], labels: np.ndarray, aus: list[str], batch: int, steps: int,
                           device: torch.device) -> tuple[float, float, float]:
    """Reference-style training: (samples/s over ``steps`` timed steps, share of time spent loading data, GFLOP per
    sample of one training step, counted on the untimed warm-up step)."""
    torch.manual_seed(0)
    random.seed(0)
    model = build_model("samer", num_classes=CLASSES, fusion="logits").to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-5)
    counts = np.bincount(labels, minlength=CLASSES)
    weight = torch.tensor(counts.max() / counts, dtype=torch.float32, device=device)
    loader = DataLoader(ReferenceStyleDataset(paths, labels, aus), batch_size=batch, shuffle=True, num_workers=0,
                        pin_memory=device.type == "cuda")
    data_seconds, timed_start = 0.0, None
    tick = time.perf_counter()
    for step, (eyes, mouth, label, au) in enumerate(loader):
        eyes, mouth, label, au = eyes.to(device), mouth.to(device), label.to(device), au.to(device)
        if step > 0:
            data_seconds += time.perf_counter() - tick

        def train_step() -> float:
            out = model(eyes=eyes, mouth=mouth)
            cls = sum(F.cross_entropy(out["heads"][k], label, weight=weight, label_smoothing=0.1)
                      for k in ("eyes", "mouth"))
            loss = 0.7 * cls + 0.3 * reference_wscl(out["features"], au)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return float(loss.detach())  # the reference accumulates the loss; this also synchronises CUDA

        if step == 0:
            gflop_per_sample = counted_gflop(train_step) / eyes.shape[0]
        else:
            train_step()
        if step == 0:
            timed_start = time.perf_counter()
        tick = time.perf_counter()
    seconds = time.perf_counter() - timed_start
    return batch * steps / seconds, data_seconds / seconds, gflop_per_sample


def our_inputs(images: list[np.ndarray], labels: np.ndarray, aus: list[str]) -> dict[str, np.ndarray]:
    """SAMER's bundle from the same JPEGs, decoded once (the feature store keeps them lossless: not timed)."""
    n = labels.size
    au = np.zeros((n, 100), dtype=np.uint8)
    for i, cell in enumerate(aus):
        au[i, [int(a) for a in cell.split("+")]] = 1
    return {"sample_id": np.array([f"bench/s{i:04d}" for i in range(n)]), "y": labels.astype(np.int64),
            "classes": np.array([f"class{c}" for c in range(CLASSES)]),
            "composite": np.stack([images[i % len(images)] for i in range(n)]), "au": au}


def default_training_settings() -> dict:
    """SAMER's optimiser and memory layout as ``conf/base/parameters_samer.yml`` sets them (what a run uses)."""
    conf = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf/base/parameters_samer.yml").read_text())
    training = conf["samer"]["training"]
    return {"optimizer": training["optimizer"], "channels_last": training["channels_last"]}


def ours_samples_per_s(inputs: dict[str, np.ndarray], batch: int, steps: int, overrides: dict) -> tuple[float, str]:
    """train_fold's own training samples/s over one epoch of ``steps`` batches, after a one-step warm-up fold."""
    cfg = {"epochs": 1, "batch_size": batch, "evaluate_each_epoch": False, "report_samples": 0,
           **default_training_settings(), **overrides}
    no_test = np.array([], dtype=np.int64)
    train_fold("samer", {}, inputs, np.arange(batch), no_test, cfg, seed=0)
    outcome = train_fold("samer", {}, inputs, np.arange(batch * steps), no_test, cfg, seed=0)
    return float(outcome.history["samples_per_s"].iloc[0]), f"{outcome.device}, {outcome.precision}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side (after one warm-up step)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="baseline and eager ours alternate this many times; the median ratio is the headline "
                             "(a host whose speed drifts between two sequential sides would move one ratio)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_runtime(args.device, "fp32", False).device
    report = sys.stdout.write
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report(f"SAMER training throughput: batch {args.batch_size}, {args.steps} timed steps (+1 warm-up) per side, "
           f"224², device {device} = {where}, {torch.get_num_threads()} torch threads, torch {torch.__version__}\n")
    rng = np.random.default_rng(0)
    n = args.batch_size * (args.steps + 1)
    labels = (np.arange(n) % CLASSES).astype(np.int64)
    aus = [au_string(rng) for _ in range(n)]
    images = composites(POOL, rng)
    with tempfile.TemporaryDirectory(prefix="samer_bench_") as tmp:
        paths = []
        for i in range(POOL):
            path = Path(tmp) / f"s{i:03d}" / "optical.jpg"
            path.parent.mkdir()
            Image.fromarray(images[i]).save(path)  # PIL's default JPEG quality, as the reference
            paths.append(path)
        decoded = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        inputs = our_inputs(decoded, labels, aus)
        eager = {"device": args.device, "precision": "fp32"}
        rounds = []
        for _ in range(max(1, args.rounds)):
            base_rate, data_share, gflop = baseline_samples_per_s([paths[i % POOL] for i in range(n)], labels, aus,
                                                                  args.batch_size, args.steps, device)
            rounds.append((base_rate, ours_samples_per_s(inputs, args.batch_size, args.steps, eager)))
    baseline = float(np.median([b for b, _ in rounds]))
    ours = {"fp32": (float(np.median([o for _, (o, _) in rounds])), rounds[0][1][1])}
    if not args.no_compile:
        ours["fp32 compiled"] = ours_samples_per_s(inputs, args.batch_size, args.steps, {**eager, "compile": True})
    peak = matmul_peak_gflops(device, torch.float32)
    for k, (base_rate, (rate, _)) in enumerate(rounds):
        report(f"round {k + 1}: baseline {base_rate:.2f}, ours fp32 {rate:.2f} samples/s, ratio {rate / base_rate:.2f}x\n")
    report(f"baseline (reference-style: JPEG decode + torchvision per sample and per RR partner, fp32, NCHW, "
           f"num_workers=0), median of {len(rounds)} rounds: {baseline:.2f} samples/s "
           f"({100 * data_share:.0f}% of its time loading data)\n")
    for name, (rate, setting) in ours.items():
        report(f"ours {name} (train_fold, SAMER's task; {setting}): {rate:.2f} samples/s\n")
    ratios = [rate / base_rate for base_rate, (rate, _) in rounds]
    report(f"ours/baseline at equal precision (fp32), median of the rounds' ratios: {np.median(ratios):.2f}x "
           f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})\n")
    if "fp32 compiled" in ours:
        report(f"ours/baseline at equal precision (fp32 compiled, one run against the median baseline): "
               f"{ours['fp32 compiled'][0] / baseline:.2f}x\n")
    report(f"roofline: one training step = {gflop:.2f} GFLOP per sample (counted); fp32 2048² matmul (best of "
           f"5) {peak:.0f} GFLOP/s\n")
    rates = {"baseline": baseline, **{f"ours {name}": rate for name, (rate, _) in ours.items()}}
    for line in roofline_lines(gflop, peak, rates):
        report(f"  {line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
