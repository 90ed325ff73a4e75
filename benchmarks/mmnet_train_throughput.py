"""MMNet training throughput (samples/s): our training step vs the reference code's step, same run, same model.

OURS: ``microexpr.training.loop.train_fold`` itself, through MMNet's task (microexpr.models.mmnet.MMNetTask)
with its default settings: frames pre-decoded into uint8 arrays in memory (the key-frame bundle: 4 onset-side and
4 apex-side frames per sample), frame jitter, one batched flip/rotation/crop + colour jitter on the device,
forward + backward + AdamW step, ``channels_last: auto``. It is run in **fp32 and in bf16 autocast** (bf16 only
where the device has native bf16), in fp32 with ``training.compile: true`` (torch.compile; its one-off compile
happens in the untimed warm-up fold and is reported separately), and once with ``precision: auto`` to show what
auto picks here. Its own per-epoch ``samples_per_s`` (training time only) is what is reported.

BASELINE: the reference's step (muse1998/MMNet ``CASME2_5.py``), written here: a ``torch.utils.data.Dataset``
whose ``__getitem__`` decodes the sample's 9 JPEG frames from disk with ``cv2.imread`` (4 onset-side, apex, 4
offset-side; only onset and apex are used, as in the reference), BGR→RGB, per frame ToPILImage → Resize(224) →
ToTensor → Normalize(ImageNet), concatenates the 27 channels and applies RandomHorizontalFlip(0.5) →
RandomRotation(3) → RandomCrop(224, padding=15) per sample on the CPU; a DataLoader with ``batch_size``,
``shuffle=True``, ``num_workers=0`` (the reference's default ``--workers 0``), ``pin_memory`` on CUDA; fp32,
NCHW; forward + CrossEntropy + backward + AdamW(8e-4, wd 0.6) step.

Both use the same freshly built MMNet (``build_model("mmnet", 5)``), batch size, device and thread count. One
warm-up step each is excluded. The headline ratio is ours/baseline **at equal precision (fp32)**. Each side is
also given as a fraction of the device's measured matmul peak (a large square matmul in that precision): an MMNet
training step costs ≈ 3 × 14.42 = 43.3 GFLOP per sample (forward + backward ≈ 3 forwards). Frames are London face
photos (MICROEXPR_FACES or ../shared/faces/london beside the checkout) with small per-frame noise, else random
noise, written as 224² JPEGs to a temporary folder.

Usage:
    python benchmarks/mmnet_train_throughput.py [--batch-size 32] [--steps 6] [--device auto] [--threads N]
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
from roofline import matmul_peak_gflops
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from microexpr.models import build_model
from microexpr.training.augment import IMAGENET_MEAN, IMAGENET_STD
from microexpr.training.loop import train_fold
from microexpr.training.runtime import resolve_runtime

DEFAULT_FACES = str(Path(__file__).resolve().parents[2] / "shared" / "faces" / "london")
GFLOP_PER_SAMPLE = 3 * 14.42  # forward + backward of MMNet at 224² (docs/models.md: 14.42 GFLOPs forward)
SIZE = 224
CLASSES = 5
POOL = 40  # distinct samples on disk (9 JPEGs each); samples beyond reuse them cyclically
ONSET_OFFSETS = (0, 1, 2, 3)  # what our input builder stores around the onset ...
APEX_OFFSETS = (-3, -2, -1, 0)  # ... and around the apex (frames mode: onset + U{0..3}, apex - U{0..3})
CLIP_FRAMES = 21  # frame files per clip: onset 0, apex 10, offset 20


def face_images(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` RGB 224² base images: face photos if a faces folder exists, else uniform noise."""
    folder = next(
        (Path(p) for p in (os.environ.get("MICROEXPR_FACES"), DEFAULT_FACES) if p and Path(p).is_dir()), None
    )
    files = sorted(folder.glob("*.jpg")) if folder else []
    images = []
    for i in range(count):
        if files:
            bgr = cv2.imread(str(files[i % len(files)]), cv2.IMREAD_COLOR)
            side = min(bgr.shape[:2])
            y0, x0 = (bgr.shape[0] - side) // 2, (bgr.shape[1] - side) // 2
            rgb = cv2.cvtColor(bgr[y0 : y0 + side, x0 : x0 + side], cv2.COLOR_BGR2RGB)
            images.append(cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
        else:
            images.append(rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8))
    return images


def write_clips(root: Path, rng: np.random.Generator) -> list[Path]:
    """POOL clip folders of CLIP_FRAMES JPEGs ``reg_img<k>.jpg`` (the reference's file naming)."""
    clips = []
    for c, base in enumerate(face_images(POOL, rng)):
        clip = root / f"clip{c:03d}"
        clip.mkdir()
        for k in range(CLIP_FRAMES):
            noisy = np.clip(base.astype(np.int16) + rng.integers(-3, 4, size=base.shape), 0, 255).astype(
                np.uint8
            )
            cv2.imwrite(str(clip / f"reg_img{k}.jpg"), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))
        clips.append(clip)
    return clips


class ReferenceStyleDataset(Dataset):
    """The reference's training ``__getitem__``: 9 frames decoded per sample, transformed one sample at a time."""

    def __init__(self, clips: list[Path], n: int) -> None:
        self.clips, self.n = clips, n
        self.labels = [i % CLASSES for i in range(n)]
        self.transform = transforms.Compose(
            [
                transforms.ToPILImage(),
                transforms.Resize((SIZE, SIZE)),
                transforms.ToTensor(),
                transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ]
        )
        self.augment = transforms.Compose(
            [
                transforms.RandomHorizontalFlip(p=0.5),
                transforms.RandomRotation(3),
                transforms.RandomCrop(SIZE, padding=15),
            ]
        )

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        clip = self.clips[idx % len(self.clips)]
        onset, apex, offset = 0, 10, CLIP_FRAMES - 1
        rise, fall = apex - onset, offset - apex
        frame_numbers = [  # the reference's 9 draws (onset window, 3 rise quarters, apex window, 4 fall draws)
            random.randint(onset, onset + int(0.15 * rise / 4)),
            random.randint(onset + int(0.9 * rise / 4), onset + int(1.1 * rise / 4)),
            random.randint(onset + int(1.8 * rise / 4), onset + int(2.2 * rise / 4)),
            random.randint(onset + int(2.7 * rise / 4), onset + int(3.3 * rise / 4)),
            random.randint(apex - int(0.15 * rise / 4), apex),
            random.randint(apex + int(0.9 * fall / 4), apex + int(1.1 * fall / 4)),
            random.randint(apex + int(1.8 * fall / 4), apex + int(2.2 * fall / 4)),
            random.randint(apex + int(2.9 * fall / 4), apex + int(3.1 * fall / 4)),
            random.randint(apex + int(3.8 * fall / 4), offset),
        ]
        frames = [cv2.imread(str(clip / f"reg_img{k}.jpg"))[:, :, ::-1] for k in frame_numbers]
        stacked = self.augment(torch.cat([self.transform(frame) for frame in frames], dim=0))
        return stacked[0:3], stacked[12:15], self.labels[idx]


def baseline_samples_per_s(
    clips: list[Path], batch: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """Reference-style training: (samples/s over ``steps`` timed steps, share of time spent loading data)."""
    torch.manual_seed(0)
    random.seed(0)
    model = build_model("mmnet", num_classes=CLASSES).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-4, weight_decay=0.6)
    dataset = ReferenceStyleDataset(clips, batch * (steps + 1))
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=0, pin_memory=device.type == "cuda"
    )
    data_seconds, timed_start = 0.0, None
    tick = time.perf_counter()
    for step, (onset, apex, label) in enumerate(loader):
        onset, apex, label = onset.to(device), apex.to(device), label.to(device)
        if step > 0:
            data_seconds += time.perf_counter() - tick
        loss = F.cross_entropy(model(onset=onset, apex=apex), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        float(loss.detach())  # the reference accumulates the loss; this also synchronises CUDA
        if step == 0:
            timed_start = time.perf_counter()  # step 0 is the warm-up
        tick = time.perf_counter()
    seconds = time.perf_counter() - timed_start
    return batch * steps / seconds, data_seconds / seconds


def decoded_inputs(clips: list[Path], n: int) -> dict[str, np.ndarray]:
    """Our input contract, decoded once from the same JPEGs (not timed: the feature store does this once)."""

    def read(clip: Path, k: int) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(clip / f"reg_img{k}.jpg")), cv2.COLOR_BGR2RGB)

    pool_onset = np.stack([[read(c, 0 + o) for o in ONSET_OFFSETS] for c in clips])
    pool_apex = np.stack([[read(c, 10 + o) for o in APEX_OFFSETS] for c in clips])
    rows = np.arange(n) % len(clips)
    return {
        "sample_id": np.array([f"bench/s{i:04d}" for i in range(n)]),
        "y": (np.arange(n) % CLASSES).astype(np.int64),
        "classes": np.array([f"class{c}" for c in range(CLASSES)]),
        "onset_frames": pool_onset[rows],
        "onset_offsets": np.tile(np.array(ONSET_OFFSETS, dtype=np.int16), (n, 1)),
        "apex_frames": pool_apex[rows],
        "apex_offsets": np.tile(np.array(APEX_OFFSETS, dtype=np.int16), (n, 1)),
        "rise": np.full(n, 10, dtype=np.int32),
        "fall": np.full(n, CLIP_FRAMES - 11, dtype=np.int32),
    }


def ours_samples_per_s(
    inputs: dict[str, np.ndarray], batch: int, steps: int, overrides: dict
) -> tuple[float, str, float]:
    """train_fold's own training samples/s over one epoch of ``steps`` batches, after a one-step warm-up fold
    (oneDNN primitives, the allocator, and with ``compile`` the compilation); also the warm-up's seconds."""
    cfg = {"epochs": 1, "batch_size": batch, "evaluate_each_epoch": False, "report_samples": 0, **overrides}
    no_test = np.array([], dtype=np.int64)
    started = time.perf_counter()
    train_fold("mmnet", {}, inputs, np.arange(batch), no_test, cfg, seed=0)
    warm_up = time.perf_counter() - started
    outcome = train_fold("mmnet", {}, inputs, np.arange(batch * steps), no_test, cfg, seed=0)
    setting = f"{outcome.device}, {outcome.precision}, channels_last={outcome.channels_last}"
    return float(outcome.history["samples_per_s"].iloc[0]), setting, warm_up


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return any(bool(getattr(torch.cpu, f, lambda: False)()) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def cpu_description() -> str:
    """``lscpu``'s model name and whether it has AVX512-BF16 / AMX (what decides bf16 speed on a CPU)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.lower().startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "?"
    flags = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in Path("/proc/cpuinfo").read_text()] if Path(
        "/proc/cpuinfo").exists() else []
    return f"{model} ({', '.join(flags) or 'no avx512_bf16/amx'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side (after one warm-up step)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_runtime(args.device, "fp32", False).device
    report = sys.stdout.write  # a benchmark reports on stdout
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    report(
        f"MMNet training throughput: batch {args.batch_size}, {args.steps} timed steps (+1 warm-up) per side, "
        f"device {device} = {where}, {torch.get_num_threads()} torch threads, torch {torch.__version__}\n"
    )
    precisions = ["fp32", "bf16"] if native_bf16(device) else ["fp32"]
    peaks = {p: matmul_peak_gflops(device, torch.float32 if p == "fp32" else torch.bfloat16) for p in precisions}
    report("matmul peak (2048², best of 5): " + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items()) + "\n")
    runs = {p: {"precision": p} for p in precisions}
    runs["fp32 compiled"] = {"precision": "fp32", "compile": True}
    runs["auto"] = {"precision": "auto"}
    ours: dict[str, tuple[float, str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mmnet_bench_") as tmp:
        clips = write_clips(Path(tmp), np.random.default_rng(0))
        inputs = decoded_inputs(clips, args.batch_size * args.steps)
        baseline, data_share = baseline_samples_per_s(clips, args.batch_size, args.steps, device)
        for name, settings in runs.items():
            ours[name] = ours_samples_per_s(inputs, args.batch_size, args.steps, {"device": args.device, **settings})

    def of_peak(samples_per_s: float, precision: str) -> str:
        return f"{100 * samples_per_s * GFLOP_PER_SAMPLE / peaks[precision]:.0f}% of the {precision} matmul peak"

    report(
        "baseline (reference-style: JPEG decode per step, per-sample torchvision, fp32, NCHW, num_workers=0): "
        f"{baseline:.2f} samples/s ({100 * data_share:.0f}% of its time loading data; {of_peak(baseline, 'fp32')})\n"
    )
    for name in [*precisions, "fp32 compiled"]:
        rate, setting, warm_up = ours[name]
        extra = f"; compiled in the warm-up fold, {warm_up:.0f} s" if "compiled" in name else ""
        report(f"ours {name} (train_fold, MMNet's task; {setting}{extra}): {rate:.2f} samples/s "
               f"({of_peak(rate, name.split()[0])})\n")
    auto_rate, auto_setting, _ = ours["auto"]
    report(f"ours precision=auto picks: {auto_setting}: {auto_rate:.2f} samples/s\n")
    report(f"ours/baseline at equal precision (fp32, eager): {ours['fp32'][0] / baseline:.2f}x\n")
    report(f"ours/baseline at equal precision (fp32, training.compile: true): {ours['fp32 compiled'][0] / baseline:.2f}x\n")
    if "bf16" in ours:
        report(f"ours bf16 / ours fp32: {ours['bf16'][0] / ours['fp32'][0]:.2f}x\n")
    report(f"ours (precision auto) / baseline: {auto_rate / baseline:.2f}x\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
