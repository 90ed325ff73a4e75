"""CVA-FPF training step: our ``train_fold`` vs a reference-style step, same run, same model, equal precision (fp32).

OURS: ``microexpr.training.loop.train_fold`` through CVA-FPF's task: key frames pre-decoded into uint8 arrays in
memory (the bundle), frame jitter, one batched flip/rotation/crop on the device, forward + backward + AdamW step,
fp32. BASELINE: the closest code's step (Svardfox/FaceSleuth ``CASME2_5.py``, MMNet's loader), written here: a
``Dataset`` that decodes the sample's 9 JPEG frames per step with ``cv2.imread`` and transforms them one sample at a
time with torchvision (Resize, ToTensor, Normalize, RandomHorizontalFlip, RandomRotation(3), RandomCrop(pad 15)),
a DataLoader with ``num_workers=0``, fp32, NCHW; forward + CrossEntropy + backward + AdamW(8e-4, wd 0.6).

Both sides use the same model configured like the code (``attention_pooling: joint``, ``attention_channels:
code``, ``head: code``) with the AU vector given as an input (``au_source: annotation``, as the code does), so
the arithmetic is identical and only the input pipeline and step differ. Each side runs in its own spawned
process, so its peak memory (CPU: peak RSS; CUDA: ``max_memory_allocated``) is its own. One warm-up step each
is excluded. fc1 (100352 -> 512) is 67 % of the parameters: AdamW keeps two moments per parameter, so the
optimiser state alone is ~0.6 GB. Roofline: the FLOPs of one training step are counted on the baseline's warm-up
step and both sides' achieved GFLOP/s are set beside a 2048² fp32 matmul's rate measured in the same run
(benchmarks/roofline.py): most of this step is matrix products (the Swin blocks and fc1).

Usage:
    python benchmarks/cva_fpf_step.py [--batch-size 8] [--steps 3] [--size 224] [--device auto] [--threads N]
                                      [--no-compile]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mmnet_train_throughput as base  # noqa: E402  (the reference-style loader and frame writer are shared)
from roofline import counted_gflop, matmul_peak_gflops, roofline_lines  # noqa: E402

from microexpr.models import build_model  # noqa: E402
from microexpr.training.loop import train_fold  # noqa: E402
from microexpr.training.runtime import resolve_runtime  # noqa: E402

CODE_LIKE = {"attention_pooling": "joint", "attention_channels": "code", "head": "code"}
N_AUS = 21


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _au_vectors(n: int) -> np.ndarray:
    return (np.random.default_rng(1).random((n, N_AUS)) < 0.2).astype(np.float32)


def baseline_side(clips: list[Path], batch: int, steps: int, size: int, device_name: str, threads: int | None,
                  queue) -> None:
    """Reference-style training in this (child) process: puts (samples/s, data share, peak MB, GFLOP per sample of
    a training step, counted on the untimed warm-up step) on ``queue``."""
    if threads:
        torch.set_num_threads(threads)
    base.SIZE = size
    device = resolve_runtime(device_name, "fp32", False).device
    torch.manual_seed(0)
    random.seed(0)
    model = build_model("cva_fpf", num_classes=base.CLASSES, image_size=size, **CODE_LIKE).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-4, weight_decay=0.6)
    dataset = base.ReferenceStyleDataset(clips, batch * (steps + 1))
    aus = torch.from_numpy(_au_vectors(len(dataset)))
    loader = DataLoader(list(range(len(dataset))), batch_size=batch, shuffle=True, num_workers=0)
    data_seconds, timed_start = 0.0, 0.0
    tick = time.perf_counter()
    for step, positions in enumerate(loader):
        items = [dataset[int(i)] for i in positions]  # per-sample decode + transforms, as the DataLoader would
        onset = torch.stack([it[0] for it in items]).to(device)
        apex = torch.stack([it[1] for it in items]).to(device)
        label = torch.tensor([it[2] for it in items], device=device)
        au = aus[positions].to(device)
        if step > 0:
            data_seconds += time.perf_counter() - tick

        def train_step() -> float:
            loss = F.cross_entropy(model(onset=onset, apex=apex, au=au)["logits"], label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        if step == 0:
            gflop = counted_gflop(train_step) / batch
        else:
            train_step()
        if step == 0:
            timed_start = time.perf_counter()
        tick = time.perf_counter()
    seconds = time.perf_counter() - timed_start
    queue.put((batch * steps / seconds, data_seconds / seconds, _peak_memory_mb(device), gflop))


def ours_side(clips: list[Path], batch: int, steps: int, size: int, device_name: str, threads: int | None,
              compile_step: bool, queue) -> None:
    """train_fold (fp32; ``training.compile`` when ``compile_step``, compiled in the untimed warm-up fold) in this
    (child) process: puts (samples/s, setting, peak MB) on ``queue``."""
    if threads:
        torch.set_num_threads(threads)
    base.SIZE = size
    n = batch * steps
    inputs = base.decoded_inputs(clips, n)
    inputs.update(au_input=_au_vectors(n), au_target=_au_vectors(n))
    cfg = {"epochs": 1, "batch_size": batch, "evaluate_each_epoch": False, "report_samples": 0, "precision": "fp32",
           "device": device_name, "compile": compile_step}
    model_cfg = {"image_size": size, **CODE_LIKE}
    task = {"au_source": "annotation"}
    no_test = np.array([], dtype=np.int64)
    train_fold("cva_fpf", model_cfg, inputs, np.arange(batch), no_test, cfg, seed=0, task_cfg=task)  # warm-up
    outcome = train_fold("cva_fpf", model_cfg, inputs, np.arange(n), no_test, cfg, seed=0, task_cfg=task)
    device = torch.device(outcome.device)
    setting = f"{outcome.device}, {outcome.precision}, channels_last={outcome.channels_last}"
    queue.put((float(outcome.history["samples_per_s"].iloc[0]), setting, _peak_memory_mb(device)))


def _run(target, *args) -> tuple:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (after one warm-up step)")
    parser.add_argument("--size", type=int, default=224, help="image side (the paper: 224)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile side (its compilation "
                        "takes about 3 minutes on a 2-core CPU)")
    args = parser.parse_args(argv)
    device = resolve_runtime(args.device, "fp32", False).device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else base.cpu_description()
    report = sys.stdout.write
    report(f"CVA-FPF training step (code-like config, AU given): {args.size}² batch {args.batch_size}, {args.steps} "
           f"timed steps (+1 warm-up) per side, device {device} = {where}, threads {args.threads or 'default'}\n")
    with tempfile.TemporaryDirectory(prefix="cva_fpf_bench_") as tmp:
        base.SIZE = args.size
        clips = base.write_clips(Path(tmp), np.random.default_rng(0))
        common = (clips, args.batch_size, args.steps, args.size, args.device, args.threads)
        baseline, data_share, baseline_mb, gflop = _run(baseline_side, *common)
        ours, setting, ours_mb = _run(ours_side, *common, False)
        compiled = None if args.no_compile else _run(ours_side, *common, True)
    report(f"baseline (reference-style: JPEG decode + per-sample torchvision per step, fp32, NCHW): {baseline:.2f} "
           f"samples/s ({100 * data_share:.0f}% of its time loading data), peak memory {baseline_mb:.0f} MB\n")
    report(f"ours (train_fold, CVA-FPF task; {setting}): {ours:.2f} samples/s, peak memory {ours_mb:.0f} MB\n")
    report(f"ours/baseline at equal precision (fp32): {ours / baseline:.2f}x\n")
    rates = {"baseline": baseline, "ours": ours}
    if compiled is not None:
        rates["ours compiled"] = compiled[0]
        report(f"ours with training.compile: true ({compiled[1]}): {compiled[0]:.2f} samples/s, peak memory "
               f"{compiled[2]:.0f} MB\n")
        report(f"ours compiled/baseline at equal precision (fp32): {compiled[0] / baseline:.2f}x\n")
    matmul = matmul_peak_gflops(device, torch.float32)
    report(f"roofline: one training step = {gflop:.1f} GFLOP per sample (counted); fp32 2048² matmul (best of 5) "
           f"{matmul:.0f} GFLOP/s\n")
    for line in roofline_lines(gflop, matmul, rates):
        report(f"  {line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
