"""MOL: our vectorised CCC, correlation and training step vs loop implementations that mirror the reference code.

1. CCC (paper 003's channel correlation, the code's ``edge_feature``): ours (``microexpr.models.mol_layers.CCC``,
   one batched gather and two matmuls) vs ``tests.models.mol_loops.ccc_loop`` (a Python loop over the 128 channels
   × 4 neighbours, as the code), forward + backward on the code's shapes (B pairs × 128 channels × 16²), on the
   code's position graph with its double difference and on the paper's channel graph. Outputs and input gradients
   are checked equal (1e-5).
2. Correlation (FlowNetC, max displacement 20, stride 2, 441 channels): ours (one all-pairs product + gather) vs
   ``correlation_loop`` (one shifted product per displacement; the code calls a compiled extension on the CPU,
   which we do not have), forward + backward on (B, 256, 16, 16). Checked equal (1e-5).
3. Training step at equal precision (fp32): ours (the batched forward — every frame encoded once, all 7 pairs in
   one batch — plus ``MOLTask.loss`` and Adam) vs a reference-style step (``reference_style_forward``: a loop over
   the 7 pairs running the conv stack and the FlowNet encoder per frame of each pair, loop CCC and loop
   correlation, the code's per-sample landmark loss loop), same weights, same batch.

Prints median times and the ratios (baseline / ours). Usage:
    python benchmarks/mol_step.py [--batch 8] [--step-batch 4] [--repeats 3] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.models.mol_loops

from microexpr.models import build_model, build_task  # noqa: E402
from microexpr.models.mol_layers import CCC, correlation  # noqa: E402
from tests.models.mol_loops import (  # noqa: E402
    ccc_loop,
    correlation_loop,
    reference_style,
    reference_style_forward,
    reference_style_landmark_loss,
)


def report(line: str) -> None:
    """A benchmark reports on stdout."""
    sys.stdout.write(line + "\n")


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        for x in inputs:
            x.grad = None
        out = fn(*inputs)
        out.square().mean().backward()
        return out
    return run


def check_equal(ours: Callable[[], torch.Tensor], loop: Callable[[], torch.Tensor], inputs: list[torch.Tensor]) -> float:
    """Max abs difference of the outputs and input gradients (raises above 1e-5)."""
    out_a = ours().detach().clone()
    grads_a = [x.grad.clone() for x in inputs]
    out_b = loop().detach().clone()
    grads_b = [x.grad.clone() for x in inputs]
    worst = max([(out_a - out_b).abs().max().item()] + [(a - b).abs().max().item() for a, b in zip(grads_a, grads_b)])
    if worst > 1e-5:
        raise AssertionError(f"vectorised and loop results differ by {worst:.2e}")
    return worst


CODE = {"ccc_axis": "positions", "ccc_double_difference": True, "ccc_project": False, "fcc_fuse": False}


def print_counts() -> None:
    """Parameters (total, MER path) and FLOPs (FlopCounterMode, eval, batch 1, 8×128²) of the docs' configs."""
    from torch.utils.flop_counter import FlopCounterMode

    mer_only = {"flow_head": False, "landmark_head": False}
    for name, cfg in [("code settings", CODE), ("paper default", {}), ("code settings, MER only", {**CODE, **mer_only}),
                      ("paper default, MER only", mer_only)]:
        model = build_model("mol", 5, **cfg).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.rand(1, 1, 8, 128, 128))
        total = sum(p.numel() for p in model.parameters())
        mer = sum(p.numel() for m in ("conv_stack", "f5c_first", "f5c_second", "mer_head")
                  for p in getattr(model, m).parameters())
        report(f"{name}: params {total:,}, MER path {mer:,}, {counter.get_total_flops() / 1e9:.2f} GFLOPs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="pairs (CCC) / frame pairs (correlation)")
    parser.add_argument("--step-batch", type=int, default=4, help="clips per training step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--counts-only", action="store_true", help="print parameter and FLOP counts and stop")
    parser.add_argument("--skip-step", action="store_true", help="time CCC and the correlation only")
    args = parser.parse_args()
    if args.counts_only:
        print_counts()
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    report(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")

    for axis, double in (("positions", True), ("channels", False)):  # the code's graph, the paper's
        ccc = CCC(256, 128, 4, axis, double_difference=double).to(device)
        x = torch.randn(args.batch, 128, 16, 16, device=device, requires_grad=True)
        ours, loop = forward_backward(ccc, x), forward_backward(lambda t, c=ccc: ccc_loop(c, t), x)
        diff = check_equal(ours, loop, [x])
        t_ours, t_loop = timed(ours, args.repeats, device), timed(loop, args.repeats, device)
        report(f"CCC {axis} graph fwd+bwd (B={args.batch}, 128 ch, 16x16): ours {t_ours * 1e3:.1f} ms, loop "
              f"{t_loop * 1e3:.1f} ms, ratio {t_loop / t_ours:.1f}x (max diff {diff:.1e})")

    a = torch.randn(args.batch, 256, 16, 16, device=device, requires_grad=True)
    b = torch.randn(args.batch, 256, 16, 16, device=device, requires_grad=True)
    ours, loop = forward_backward(correlation, a, b), forward_backward(correlation_loop, a, b)
    diff = check_equal(ours, loop, [a, b])
    t_ours, t_loop = timed(ours, args.repeats, device), timed(loop, args.repeats, device)
    report(f"correlation fwd+bwd (B={args.batch}, 256 ch, 16x16, 441 displacements): ours {t_ours * 1e3:.1f} ms, "
          f"loop {t_loop * 1e3:.1f} ms, ratio {t_loop / t_ours:.1f}x (max diff {diff:.1e})")

    if args.skip_step:
        return
    model = build_model("mol", 5, **CODE).to(device)
    twin = reference_style(model)
    task = build_task("mol")
    n = args.step_batch
    batch = {"video": torch.rand(n, 1, 8, 128, 128, device=device), "y": torch.arange(n, device=device) % 5,
             "flows": torch.randn(n, 7, 2, 128, 128, device=device),
             "landmarks": torch.rand(n, 7, 68, 2, device=device) * 128}
    opt_ours = torch.optim.Adam(model.parameters(), lr=1e-4)
    opt_ref = torch.optim.AdamW(twin.parameters(), lr=1e-4, weight_decay=1e-3)

    def step_ours() -> None:
        opt_ours.zero_grad(set_to_none=True)
        task.loss(model(batch["video"]), batch, None).total.backward()
        opt_ours.step()

    def step_reference() -> None:
        opt_ref.zero_grad(set_to_none=True)
        out = reference_style_forward(twin, batch["video"])
        ce = torch.nn.functional.nll_loss(torch.log_softmax(out["logits"], 1), batch["y"])
        flow = torch.nn.functional.mse_loss(out["flow"], batch["flows"]) / 7
        ldm = reference_style_landmark_loss(out["landmarks"], batch["landmarks"])
        (ce + 10 * flow + 0.5 * ldm).backward()
        opt_ref.step()

    model.train()
    twin.train()
    t_ours = timed(step_ours, args.repeats, device)
    t_ref = timed(step_reference, args.repeats, device)
    report(f"training step fp32 (B={n} clips of 8x128x128, full model): ours {t_ours:.2f} s, reference-style "
          f"{t_ref:.2f} s, ratio {t_ref / t_ours:.1f}x")


if __name__ == "__main__":
    main()
