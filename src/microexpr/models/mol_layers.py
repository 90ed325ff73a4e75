"""MOL's building blocks (paper 003, reference code CYF-cuber/MOL), written vectorised.

- ``circular_conv``: a depthwise convolution along H or W whose kernel spans the whole axis, with circular
  wrap-around (ParC-style: a 32-long meta kernel cropped to the feature size).
- ``FCC``: the fully circular convolution block (two branches of two circular convolutions each, positional
  encodings, one residual per branch) and its ablation variants (vertical only, horizontal only).
- ``knn_indices`` / ``CCC``: the channel-correlation (graph) block: cosine kNN, edge MLP
  ``ReLU(W1·x_i + W2·(x_j − x_i))``, max over neighbours, in one batched gather (no loop over nodes or neighbours).
  The graph is built over channels (paper) or over spatial positions (reference code, which also subtracts the
  centre twice).
- ``correlation``: FlowNetC's correlation layer (max displacement 20, stride 2 → 21×21 = 441 channels, ÷C) from
  one all-pairs product and a gather (the 16×16 map has fewer positions than displacements).
- ``FlowNetC``: the reference's flow head (shared encoder, correlation, F5C features, deconvolution decoder to
  full resolution); ``width`` scales every channel count (64 = the reference).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CCC", "FCC", "FCC_AXES", "FlowNetC", "circular_conv", "correlation", "knn_indices"]

#: variant -> axes of the two stages of each of the two branches ("h": along H, "w": along W)
FCC_AXES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "fcc": (("h", "w"), ("w", "h")),
    "vertical": (("h", "h"), ("h", "h")),
    "horizontal": (("w", "w"), ("w", "w")),
}


def circular_conv(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, axis: str) -> torch.Tensor:
    """Depthwise circular convolution of (B, C, H, W) along ``axis`` ("h" or "w") with a (C, L) meta kernel cropped
    to the axis length; output size = input size (the input is wrapped by length − 1 on the far side)."""
    size = x.shape[2] if axis == "h" else x.shape[3]
    weight = kernel[:, :size]
    if axis == "h":
        padded = F.pad(x, (0, 0, 0, size - 1), mode="circular")
        return F.conv2d(padded, weight[:, None, :, None], bias, groups=x.shape[1])
    padded = F.pad(x, (0, size - 1, 0, 0), mode="circular")
    return F.conv2d(padded, weight[:, None, None, :], bias, groups=x.shape[1])


class FCC(nn.Module):
    """Fully circular convolution on (B, C, H, W): channels split in two halves; each half: + positional encoding →
    (BN, first stage only) → circular depthwise conv → + positional encoding → circular depthwise conv → + input.

    ``variant``: fcc (H then W | W then H, the paper's) | vertical (FCC-V) | horizontal (FCC-H).
    ``fuse``: the paper's 1×1 convolution fusing the two halves after the concat (absent from the code).
    Initialisation as the code: kernels like a depthwise Conv2d, biases and positional encodings ``randn``.
    """

    def __init__(self, channels: int = 128, meta_kernel: int = 32, variant: str = "fcc", fuse: bool = False) -> None:
        super().__init__()
        if variant not in FCC_AXES:
            raise ValueError(f"FCC variant must be one of {sorted(FCC_AXES)}, got {variant!r}")
        if channels % 2:
            raise ValueError(f"FCC needs an even channel count, got {channels}")
        half = channels // 2
        self.axes = FCC_AXES[variant]
        self.half, self.meta_kernel = half, meta_kernel
        bound = 1.0 / meta_kernel**0.5  # kaiming-uniform bound of a depthwise conv with fan-in = meta_kernel
        self.kernels = nn.Parameter(torch.empty(2, 2, half, meta_kernel).uniform_(-bound, bound))
        self.biases = nn.Parameter(torch.randn(2, 2, half))
        self.encodings = nn.Parameter(torch.randn(2, 2, half, meta_kernel))
        self.norms = nn.ModuleList([nn.BatchNorm2d(half), nn.BatchNorm2d(half)])
        self.fuse = nn.Conv2d(channels, channels, 1) if fuse else None

    def _encoding(self, branch: int, stage: int, height: int, width: int) -> torch.Tensor:
        axis = self.axes[branch][stage]
        pe = self.encodings[branch, stage]
        if axis == "h":
            return pe[:, :height, None].expand(-1, height, width)
        return pe[:, None, :width].expand(-1, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        if max(height, width) > self.meta_kernel:
            raise ValueError(f"FCC meta kernel {self.meta_kernel} is shorter than the {height}x{width} feature map")
        outputs = []
        for branch, part in enumerate(torch.chunk(x, 2, dim=1)):
            y = self.norms[branch](part + self._encoding(branch, 0, height, width))
            y = circular_conv(y, self.kernels[branch, 0], self.biases[branch, 0], self.axes[branch][0])
            y = y + self._encoding(branch, 1, height, width)
            y = circular_conv(y, self.kernels[branch, 1], self.biases[branch, 1], self.axes[branch][1])
            outputs.append(part + y)
        out = torch.cat(outputs, dim=1)
        return self.fuse(out) if self.fuse is not None else out


def knn_indices(nodes: torch.Tensor, k: int) -> torch.Tensor:
    """(B, M, D) node features → (B, M, k) indices of each node's k most cosine-similar nodes (itself included)."""
    unit = F.normalize(nodes, p=2, dim=-1)
    similarity = unit @ unit.transpose(1, 2)
    return similarity.topk(k, dim=-1).indices


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, M, D) rows picked by (B, M, k) indices → (B, M, k, D): one flat index_select (its backward is an
    index_add into (B·M, D), not a scatter into an expanded (B, M, M, D) view)."""
    batch, rows, dim = x.shape
    flat = (index + torch.arange(batch, device=x.device).view(-1, 1, 1) * rows).reshape(-1)
    return x.reshape(batch * rows, dim).index_select(0, flat).view(*index.shape, dim)


class CCC(nn.Module):
    """Channel correlation on (B, C, H, W) → (B, C, H, W) (the residual is added by the caller).

    Every channel c is a node carrying its H·W map x_c. ``axis``: "channels" (paper): kNN among channels by the
    cosine of their maps, e_j = ReLU(W1·x_c + W2·(x_{n_j(c)} − x_c)); "positions" (code): kNN among spatial
    positions by the cosine of their C-vectors, the neighbour map x_c∘n_j gathers x_c at each position's j-th
    neighbour, and ``double_difference`` (code) makes the edge term W2·(x_c∘n_j − 2·x_c). Output: max over j,
    then the paper's 1×1 convolution when ``project``. W1, W2: dense (H·W)×(H·W) with bias.
    """

    def __init__(self, positions: int, channels: int = 128, k: int = 4, axis: str = "channels",
                 double_difference: bool = False, project: bool = False) -> None:
        super().__init__()
        if axis not in ("channels", "positions"):
            raise ValueError(f"CCC axis must be 'channels' or 'positions', got {axis!r}")
        self.k, self.axis, self.double_difference = k, axis, double_difference
        self.w_self = nn.Linear(positions, positions)
        self.w_edge = nn.Linear(positions, positions)
        self.project = nn.Conv2d(channels, channels, 1) if project else None

    def neighbour_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, N) → (B, C, k, N): the maps of each node's neighbours (channel graph) or x_c∘n_j (position graph)."""
        batch, channels, positions = x.shape
        if self.axis == "channels":
            return _rows(x, knn_indices(x, self.k))
        index = knn_indices(x.transpose(1, 2), self.k)  # (B, N, k) over positions
        flat = index.transpose(1, 2).reshape(batch, 1, self.k * positions).expand(-1, channels, -1)
        return torch.gather(x, 2, flat).view(batch, channels, self.k, positions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        flat = x.reshape(batch, channels, height * width)
        if self.axis == "channels":  # W2·(x_j − x_i) = (W2·x)_j − W2·x_i: project every channel once, then gather
            index = knn_indices(flat, self.k)
            projected = F.linear(flat, self.w_edge.weight)
            centre = self.w_self(flat) + self.w_edge.bias - (2 if self.double_difference else 1) * projected
            gathered = _rows(projected, index)
            out = F.relu(centre[:, :, None] + gathered).amax(dim=2).view(batch, channels, height, width)
            return self.project(out) if self.project is not None else out
        neighbours = self.neighbour_maps(flat)
        centre = flat[:, :, None]
        difference = neighbours - (2 * centre if self.double_difference else centre)
        edges = F.relu(self.w_self(flat)[:, :, None] + self.w_edge(difference))
        out = edges.amax(dim=2).view(batch, channels, height, width)
        return self.project(out) if self.project is not None else out


@lru_cache(maxsize=32)
def _displacement_index(height: int, width: int, max_displacement: int, stride: int,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(H·W, D²) flat target positions of every (position, displacement) and their in-bounds mask (D = 2·r/s + 1).
    Built outside inference mode, so a cached index made during prediction can serve training later."""
    with torch.inference_mode(False):
        return _build_displacement_index(height, width, max_displacement, stride, device)


def _build_displacement_index(height: int, width: int, max_displacement: int, stride: int,
                              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    steps = torch.arange(-max_displacement, max_displacement + 1, stride, device=device)
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    ty = ys.reshape(-1, 1) + dy.reshape(1, -1)
    tx = xs.reshape(-1, 1) + dx.reshape(1, -1)
    valid = (ty >= 0) & (ty < height) & (tx >= 0) & (tx < width)
    index = torch.where(valid, ty * width + tx, torch.zeros_like(ty))
    return index, valid


def correlation(first: torch.Tensor, second: torch.Tensor, max_displacement: int = 20, stride: int = 2) -> torch.Tensor:
    """FlowNetC correlation (kernel 1): out[b, dy·D + dx, y, x] = Σ_c f1[b,c,y,x]·f2[b,c,y+s·dy,x+s·dx] / C, zero
    outside the map; (B, C, H, W) × 2 → (B, D², H, W). Computed as one all-pairs product and a gather."""
    batch, channels, height, width = first.shape
    index, valid = _displacement_index(height, width, max_displacement, stride, first.device)
    pairs = first.flatten(2).transpose(1, 2) @ second.flatten(2)  # (B, HW, HW)
    picked = torch.gather(pairs, 2, index.expand(batch, -1, -1)) * valid.to(pairs.dtype)
    return (picked / channels).transpose(1, 2).reshape(batch, -1, height, width)


def _conv(in_planes: int, out_planes: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.LeakyReLU(0.1, inplace=True),
    )


def _deconv(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_planes, out_planes, 4, 2, 1, bias=False), nn.LeakyReLU(0.1, inplace=True))


def _crop_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x[:, :, : like.shape[2], : like.shape[3]]


class FlowNetC(nn.Module):
    """The reference's flow head (a FlowNetC with BN) for (B, 1, H, W) frame pairs plus F5C features.

    Encoder conv 6/2, 4/2, 2/2 (shared by both frames); [redirect(w/2), correlation(441), feats] → conv3_1 (4w) →
    conv4/4_1 (8w) → conv5/5_1 (8w) → conv6/6_1 (16w); the FlowNet decoder (deconvolutions, a flow prediction and
    its upsampling at every scale, concatenated) down to full resolution; returns flow0 (B, 2, H, W).
    ``width`` = 64 gives the reference's channel counts.
    """

    def __init__(self, feature_channels: int = 256, width: int = 64, max_displacement: int = 20, stride: int = 2) -> None:
        super().__init__()
        w = width
        self.max_displacement, self.stride = max_displacement, stride
        self.correlate = correlation  # (f1, f2, max_displacement, stride) -> (B, D², H, W); benchmarks swap in a loop
        displacements = (2 * max_displacement // stride + 1) ** 2
        self.conv1, self.conv2, self.conv3 = _conv(1, w, 6, 2), _conv(w, 2 * w, 4, 2), _conv(2 * w, 4 * w, 2, 2)
        self.conv_redir = _conv(4 * w, w // 2, 1)
        self.conv3_1 = _conv(w // 2 + displacements + feature_channels, 4 * w)
        self.conv4, self.conv4_1 = _conv(4 * w, 8 * w, stride=2), _conv(8 * w, 8 * w)
        self.conv5, self.conv5_1 = _conv(8 * w, 8 * w, stride=2), _conv(8 * w, 8 * w)
        self.conv6, self.conv6_1 = _conv(8 * w, 16 * w, stride=2), _conv(16 * w, 16 * w)
        # decoder: (skip channels, deconv out) from coarse to fine; the input of each level = skip + deconv + 2
        skips = [8 * w, 8 * w, 4 * w, 2 * w, w, 1]  # conv5, conv4, conv3_1, conv2, conv1, the frame
        outs = [8 * w, 4 * w, 2 * w, 2 * w, w, w // 2]
        ins = [16 * w] + [s + o + 2 for s, o in zip(skips[:-1], outs[:-1], strict=True)]
        self.deconvs = nn.ModuleList([_deconv(i, o) for i, o in zip(ins, outs, strict=True)])
        self.predicts = nn.ModuleList([nn.Conv2d(i, 2, 3, 1, 1, bias=False) for i in ins]
                                      + [nn.Conv2d(skips[-1] + outs[-1] + 2, 2, 3, 1, 1, bias=False)])
        self.upsamples = nn.ModuleList([nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False) for _ in ins])
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """conv1, conv2, conv3 outputs of (N, 1, H, W) frames."""
        c1 = self.conv1(frames)
        c2 = self.conv2(c1)
        return [c1, c2, self.conv3(c2)]

    def forward(self, first: torch.Tensor, second: torch.Tensor, features: torch.Tensor,
                encoded: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> torch.Tensor:
        """``first``/``second`` (B, 1, H, W) frames, ``features`` (B, F, H/8, W/8); ``encoded``: their encoder outputs
        when already computed (each frame of a clip is encoded once)."""
        enc_a, enc_b = encoded if encoded is not None else (self.encode(first), self.encode(second))
        corr = F.leaky_relu(self.correlate(enc_a[2], enc_b[2], self.max_displacement, self.stride), 0.1)
        out3 = self.conv3_1(torch.cat([self.conv_redir(enc_a[2]), corr, features], dim=1))
        out4 = self.conv4_1(self.conv4(out3))
        out5 = self.conv5_1(self.conv5(out4))
        x = self.conv6_1(self.conv6(out5))
        skips = [out5, out4, out3, enc_a[1], enc_a[0], first]
        for deconv, predict, upsample, skip in zip(self.deconvs, self.predicts[:-1], self.upsamples, skips, strict=True):
            flow = predict(x)
            x = torch.cat([skip, _crop_like(deconv(x), skip), _crop_like(upsample(flow), skip)], dim=1)
        return self.predicts[-1](x)
