"""attr_contrast training step: ours vs a reference-style step, same model, same batch, equal precision (fp32).

OURS: what ``train_fold`` runs per batch through ``AttrContrastTask``: the clips come from the in-memory input
bundle (uint8 RGB, float16 flow, int32 token ids tokenized once when the bundle is built), are normalised on the
device, then forward (both 3D-ResNets + BERT), the three-term loss, backward and the Adam step. Memory layout as
``train_fold`` resolves it (``channels_last: auto``: channels_last_3d for the 3D-ResNets on a CPU).

BASELINE (reference-style; the paper has no public code, so this is the usual two-stream 3D-CNN data path): a
``torch.utils.data.Dataset`` whose ``__getitem__`` decodes the sample's 16 RGB JPEG frames and its 16 flow fields
(u and v each stored as an 8-bit JPEG, ±``FLOW_BOUND`` px mapped to 0..255, the two-stream convention) from disk
with ``cv2.imread``, converts, normalises and stacks them on the CPU, and a collate that tokenizes the batch's AU
texts with the tokenizer; DataLoader ``num_workers=0``, fp32, NCDHW (contiguous); the same forward, loss, backward
and Adam step.

Each side runs in its own spawned process (so peak-memory high-water marks do not mix): one untimed warm-up step,
then ``--steps`` timed steps. Reported: seconds per step, samples/s, the ratio ours/baseline, and the peak memory
of a step (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS above its RSS after the model was built).
``--ours-precision auto`` additionally times our step at the precision ``precision: auto`` picks (not equal
precision: a separate line). Roofline: the FLOPs of the step are counted on the baseline's warm-up step and both
sides' achieved GFLOP/s are set beside a 2048² fp32 matmul's rate measured in the same run (benchmarks/roofline.py).

Usage:
    python benchmarks/attr_contrast_step.py [--size 112] [--frames 16] [--batch-size 8] [--steps 3] [--device auto]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from roofline import counted_gflop, matmul_peak_gflops, roofline_lines
from torch.utils.data import DataLoader, Dataset

from microexpr.datasets.text_encoder import TextEncoderDataset
from microexpr.models import build_model, build_task
from microexpr.training.augment import IMAGENET_MEAN, IMAGENET_STD
from microexpr.training.loop import OptimizerConfig, _train_data, build_optimizer
from microexpr.training.runtime import place_model, resolve_runtime
from microexpr.training.task import FoldContext, Streams

CLASSES = 5
FLOW_BOUND = 8.0
TEXTS = ("cheek raiser, lip corner puller", "brow lowerer", "inner brow raiser, outer brow raiser, upper lid raiser",
         "lip corner depressor, chin raiser", "nose wrinkler, upper lip raiser")


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _clips(n: int, frames: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    faces = [cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3)).astype(np.float32), (0, 0), 2.0) for _ in range(n)]
    rgb = np.stack([np.clip(face + rng.normal(0, 3, (frames, 1, 1, 1)), 0, 255) for face in faces]).astype(np.uint8)
    flow = rng.normal(0, 1.0, (n, frames, size, size, 2)).astype(np.float16)
    y = (np.arange(n) % CLASSES).astype(np.int64)
    return rgb, flow, y


def _write_disk(root: Path, rgb: np.ndarray, flow: np.ndarray) -> None:
    for i in range(rgb.shape[0]):
        folder = root / f"s{i:03d}"
        folder.mkdir(parents=True)
        for t in range(rgb.shape[1]):
            cv2.imwrite(str(folder / f"img_{t:02d}.jpg"), cv2.cvtColor(rgb[i, t], cv2.COLOR_RGB2BGR))
            for c, axis in enumerate("uv"):
                q = np.clip((flow[i, t, ..., c].astype(np.float32) / FLOW_BOUND + 1) * 127.5, 0, 255)
                cv2.imwrite(str(folder / f"flow_{axis}_{t:02d}.jpg"), q.astype(np.uint8))


class ReferenceStyleClips(Dataset):
    """Per-step decode of 16 RGB frames and 16 (u, v) flow JPEG pairs per sample, normalised on the CPU."""

    def __init__(self, root: Path, n: int, frames: int, y: np.ndarray) -> None:
        self.root, self.n, self.frames, self.y = root, n, frames, y
        self.mean = np.asarray(IMAGENET_MEAN, np.float32)
        self.std = np.asarray(IMAGENET_STD, np.float32)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        folder = self.root / f"s{i:03d}"
        rgb, flow = [], []
        for t in range(self.frames):
            image = cv2.cvtColor(cv2.imread(str(folder / f"img_{t:02d}.jpg")), cv2.COLOR_BGR2RGB)
            rgb.append((image.astype(np.float32) / 255.0 - self.mean) / self.std)
            uv = [cv2.imread(str(folder / f"flow_{a}_{t:02d}.jpg"), cv2.IMREAD_GRAYSCALE) for a in "uv"]
            flow.append(np.stack([(c.astype(np.float32) / 127.5 - 1.0) * FLOW_BOUND for c in uv], axis=-1))
        rgb_t = torch.from_numpy(np.stack(rgb)).permute(3, 0, 1, 2).contiguous()
        flow_t = torch.from_numpy(np.stack(flow)).permute(3, 0, 1, 2).contiguous()
        return rgb_t, flow_t, TEXTS[int(self.y[i])], int(self.y[i])


def _side(kind: str, args: dict[str, Any], queue: Any) -> None:
    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    encoder = TextEncoderDataset().load()
    task = build_task("attr_contrast", {"max_tokens": 32}, {"text_encoder": encoder})
    model = build_model("attr_contrast", CLASSES, **task.model_options())
    precision = args["precision"] if kind == "ours" else "fp32"
    runtime = resolve_runtime(args["device"], precision, "auto" if kind == "ours" else False, model)
    model = place_model(model, runtime).train()
    optimizer = build_optimizer(task.param_groups(model), OptimizerConfig(name="Adam", lr=1e-4, weight_decay=0.0))
    n, batch = args["n"], args["batch_size"]
    rgb, flow, y = _clips(n, args["frames"], args["size"])
    tokens = encoder.tokenize([TEXTS[int(c)] for c in y], 32)
    if kind == "ours":
        bundle = {"rgb": rgb, "flow": flow, "tokens": tokens, "sample_id": np.array([f"s{i}" for i in range(n)]),
                  "y": y, "classes": np.array([f"c{c}" for c in range(CLASSES)])}
        data = _train_data(task, bundle)
        fold = FoldContext(data, np.arange(n), task.prepare_fold(data, np.arange(n)))
        streams = Streams(np.random.default_rng(0), torch.Generator().manual_seed(0))
        order = np.random.default_rng(0).permutation(n)

        def batches():
            step = 0
            while True:
                pos = order[(step * batch) % n:][:batch]
                step += 1
                out = task.train_batch(fold, pos, streams, runtime)
                out["y"] = torch.from_numpy(y[pos]).to(runtime.device)
                yield out
        source = batches()
    else:
        tmp = tempfile.TemporaryDirectory()
        _write_disk(Path(tmp.name), rgb, flow)
        dataset = ReferenceStyleClips(Path(tmp.name), n, args["frames"], y)

        def collate(items):
            rgb_b, flow_b, texts, labels = zip(*items, strict=True)
            ids = encoder.tokenizer(list(texts), padding="max_length", truncation=True, max_length=32,
                                    return_tensors="pt")["input_ids"]
            return {"rgb": torch.stack(rgb_b), "flow": torch.stack(flow_b), "tokens": ids, "y": torch.tensor(labels)}

        loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, collate_fn=collate,
                            pin_memory=runtime.device.type == "cuda")

        def batches():
            while True:
                for item in loader:
                    yield {k: v.to(runtime.device, non_blocking=True) for k, v in item.items()}
        source = batches()

    def step() -> None:
        item = next(source)
        with runtime.autocast():
            outputs = task.forward(model, item, training=True)
            losses = task.loss(outputs, item, None)
        losses.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    gflop = counted_gflop(step) / batch  # the warm-up step, counted
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()
    started = time.perf_counter()
    for _ in range(args["steps"]):
        step()
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = max(0.0, _peak_rss_mb() - base)
    seconds = (time.perf_counter() - started) / args["steps"]
    queue.put({"kind": kind, "precision": runtime.precision, "device": str(runtime.device), "s_per_step": seconds,
               "samples_per_s": batch / seconds, "peak_mb": peak, "gflop_per_sample": gflop,
               "layout": str(runtime.memory_format).removeprefix("torch.")})


def run_side(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_side, args=(kind, args, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Exception:  # noqa: BLE001 - queue.Empty: check the child is still alive
            if not process.is_alive():
                raise RuntimeError(f"the {kind} process died (exit code {process.exitcode})") from None
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--ours-precision", default="fp32", help="also time ours at this precision (auto | bf16)")
    options = parser.parse_args()
    args = {"size": options.size, "frames": options.frames, "batch_size": options.batch_size, "steps": options.steps,
            "device": options.device, "threads": options.threads, "n": options.batch_size * 2, "precision": "fp32"}
    print(f"attr_contrast step, {options.frames}x{options.size}² clips, batch {options.batch_size}, "
          f"{options.steps} timed steps, {options.threads} thread(s)")
    baseline = run_side("baseline", args)
    ours = run_side("ours", args)
    rows = [baseline, ours]
    if options.ours_precision != "fp32":
        rows.append(run_side("ours", {**args, "precision": options.ours_precision}))
    for row in rows:
        print(f"  {row['kind']:8s} {row['device']:5s} {row['precision']:5s} {row['layout']:20s} "
              f"{row['s_per_step']:8.3f} s/step {row['samples_per_s']:7.2f} samples/s  "
              f"peak {row['peak_mb']:8.1f} MiB per step")
    print(f"ratio ours/baseline at equal precision (fp32): {baseline['s_per_step'] / ours['s_per_step']:.2f}x")
    peak = matmul_peak_gflops(torch.device(baseline["device"]), torch.float32)
    print(f"roofline: one training step = {baseline['gflop_per_sample']:.2f} GFLOP per sample (counted); fp32 2048² "
          f"matmul (best of 5) {peak:.0f} GFLOP/s")
    for line in roofline_lines(baseline["gflop_per_sample"], peak,
                               {"baseline": baseline["samples_per_s"], "ours fp32": ours["samples_per_s"]}):
        print(f"  {line}")
    if len(rows) == 3:
        print(f"ratio ours ({rows[2]['precision']})/baseline (fp32), not equal precision: "
              f"{baseline['s_per_step'] / rows[2]['s_per_step']:.2f}x")


if __name__ == "__main__":
    main()
