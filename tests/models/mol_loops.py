"""Straightforward loop implementations that mirror the MOL reference code's structure (written here, not copied):
the yardstick our vectorised CCC, correlation and training step are checked (tests/models/test_mol.py) and timed
(benchmarks/mol_step.py) against.

- ``ccc_loop``: the code's edge_feature — a Python loop over channels and over neighbours, one dense map per call;
- ``correlation_loop``: one shifted product per displacement (441 of them);
- ``reference_style_forward``: MOL's forward as the code runs it — a loop over the 7 pairs, the conv stack and the
  FlowNet encoder run on each frame of each pair, CCC and correlation as loops;
- ``reference_style_landmark_loss``: the code's loop over frames and samples.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from microexpr.models.mol import MOL, N_LANDMARKS, inter_pupil_distance
from microexpr.models.mol_layers import CCC, knn_indices


def ccc_loop(module: CCC, x: torch.Tensor) -> torch.Tensor:
    """CCC of (B, C, H, W) one channel and one neighbour at a time (the code's loops), before the 1×1 projection."""
    batch, channels, height, width = x.shape
    flat = x.reshape(batch, channels, height * width)
    if module.axis == "positions":
        index = knn_indices(flat.transpose(1, 2), module.k)  # (B, N, k)
    else:
        index = knn_indices(flat, module.k)  # (B, C, k)
    rows = torch.arange(batch)
    out = []
    for c in range(channels):
        centre = flat[:, c]
        edges = []
        for j in range(module.k):
            if module.axis == "positions":
                neighbour = torch.gather(centre, 1, index[:, :, j])
            else:
                neighbour = flat[rows, index[:, c, j]]
            difference = neighbour - centre
            if module.double_difference:
                difference = difference - centre
            edges.append(F.relu(module.w_self(centre) + module.w_edge(difference)))
        out.append(torch.stack(edges, dim=-1).amax(dim=-1))
    return torch.stack(out, dim=1).view(batch, channels, height, width)


def correlation_loop(first: torch.Tensor, second: torch.Tensor, max_displacement: int = 20, stride: int = 2) -> torch.Tensor:
    """FlowNetC correlation one displacement at a time: the overlap of f1 and f2 shifted by (dy, dx), summed over C."""
    batch, channels, height, width = first.shape
    steps = list(range(-max_displacement, max_displacement + 1, stride))
    planes = []
    for dy in steps:
        for dx in steps:
            plane = first.new_zeros(batch, height, width)
            y0, y1 = max(0, -dy), min(height, height - dy)
            x0, x1 = max(0, -dx), min(width, width - dx)
            if y0 < y1 and x0 < x1:
                product = (first[:, :, y0:y1, x0:x1] * second[:, :, y0 + dy : y1 + dy, x0 + dx : x1 + dx]).sum(1)
                plane = F.pad(product, (x0, width - x1, y0, height - y1))
            planes.append(plane / channels)
    return torch.stack(planes, dim=1)


def reference_style(model: MOL) -> MOL:
    """A copy of ``model`` whose FlowNet correlates with ``correlation_loop`` (same weights)."""
    twin = copy.deepcopy(model)
    if twin.flownet is not None:
        twin.flownet.correlate = correlation_loop
    return twin


def _f5c_loop(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block.fcc(x)
        if block.ccc is not None:
            ccc = ccc_loop(block.ccc, x)
            x = x + (block.ccc.project(ccc) if block.ccc.project is not None else ccc)
    return x


def reference_style_forward(model: MOL, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """MOL's forward structured as the code (concat fusion): per pair, both frames through the conv stack, F5C with
    loop CCC, the landmark head, and FlowNet with its own encoding of both frames and the loop correlation."""
    batch, _, length, height, width = video.shape
    frames = model.norm(video)
    stacked, flows, points = [], [], []
    for t in range(length - 1):
        a, b = frames[:, :, t], frames[:, :, t + 1]
        first = _f5c_loop(model.f5c_first, model.conv_stack(a))
        second = _f5c_loop(model.f5c_second, model.conv_stack(b))
        stacked += [first, second]
        if model.landmark_head is not None:
            points.append(model.landmark_head(second))
        if model.flownet is not None:
            flows.append(model.flownet(a, b, torch.cat([first, second], dim=1)))
    logits = model.mer_head(torch.stack(stacked, dim=-1))
    return {"logits": logits, "flow": torch.stack(flows, dim=1) if flows else None,
            "landmarks": torch.stack(points, dim=1) if points else None}


def reference_style_landmark_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The code's landmark term: per frame, per sample, L1 sum ÷ inter-pupil distance; summed; ÷ (B·68)."""
    total = predicted.new_zeros(())
    for f in range(predicted.shape[1]):
        for b in range(predicted.shape[0]):
            distance = float(inter_pupil_distance(target[b, f]))
            total = total + (predicted[b, f] - target[b, f]).abs().sum() / distance
    return total / (predicted.shape[0] * N_LANDMARKS)
