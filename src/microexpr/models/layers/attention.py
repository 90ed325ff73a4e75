"""Residual and spatial-attention blocks shared by the MER models.

- ``ResidualBlock``: conv3x3(stride) -> BN -> ReLU -> conv kxk -> BN, + shortcut, ReLU. With k=3 it is ResNet18's
  BasicBlock (the MMNet paper's baseline); with k=1 it is the convolution pair of MMNet's CA block.
- ``SpatialAttention``: CBAM's spatial attention map, sigma(conv([mean_c(x); max_c(x)])), one channel.
- ``ContinuousAttentionBlock``: MMNet's CA block (paper Eq. 1-3): a residual conv pair whose spatial attention map
  is multiplied by the max-pooled map of the previous block before it re-weights the features.
- ``IndependentAttentionBlock``: the same block with CBAM-style attention computed in each block on its own
  (MMNet paper Table 4's "independent attention"); the previous block's map is ignored.

Written here rather than taken from timm/torchvision: torchvision's BasicBlock has no 1x1 second conv or spatial
gate, and timm's CBAM couples channel and spatial attention and has no inter-block chaining.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ContinuousAttentionBlock",
    "IndependentAttentionBlock",
    "ResidualBlock",
    "SpatialAttention",
    "shortcut",
]


def shortcut(in_channels: int, out_channels: int, stride: int, always_project: bool = False) -> nn.Module:
    """Identity when the shape is kept, else a 1x1 strided conv + BN (ResNet's projection shortcut).

    ``always_project=True`` uses the 1x1 conv + BN even when the shape is kept (a literal reading of the MMNet
    paper's Eq. 2, whose shortcut term is always ``f_1x1(F)``).
    """
    if stride == 1 and in_channels == out_channels and not always_project:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResidualBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv(second_kernel) -> BN, plus shortcut, then ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        second_kernel: int = 3,
        always_project_shortcut: bool = False,
    ) -> None:
        super().__init__()
        if second_kernel not in (1, 3):
            raise ValueError(f"second_kernel must be 1 or 3, got {second_kernel!r}")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, second_kernel, padding=second_kernel // 2, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut(in_channels, out_channels, stride, always_project_shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SpatialAttention(nn.Module):
    """One-channel spatial map sigma(BN(conv_k([mean_c(x); max_c(x)]))) in (0, 1), shape (B, 1, H, W).

    ``batch_norm=False`` drops the BN (the MMNet paper's Eq. 1 as written; the reference code and CBAM's own code
    have it).
    """

    def __init__(self, kernel_size: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"attention kernel_size must be a positive odd int, got {kernel_size!r}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(1) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.norm(self.conv(pooled)))


class ContinuousAttentionBlock(nn.Module):
    """MMNet's CA block: residual conv3x3 -> conv1x1 features re-weighted by a chained spatial attention map.

    ``forward(x, prior)`` returns ``(features, attention)``. ``attention`` is this block's map times
    ``MaxPool2d(3, stride, 1)(prior)`` (the previous block's returned map, brought to this block's size); it is
    what multiplies the features and what the next block receives. ``prior=None`` (first block) skips the product.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        attention_kernel: int = 1,
        attention_bn: bool = True,
        always_project_shortcut: bool = False,
    ) -> None:
        super().__init__()
        self.body = ResidualBlock(in_channels, out_channels, stride, 1, always_project_shortcut)
        self.attention = SpatialAttention(attention_kernel, attention_bn)
        self.prior_pool = nn.MaxPool2d(3, stride=stride, padding=1) if stride > 1 else nn.Identity()

    def combine(self, attention: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """This block's map times the pooled previous map (the continuous-attention product of Eq. 1)."""
        if prior is None:
            return attention
        return attention * self.prior_pool(prior)

    def forward(
        self, x: torch.Tensor, prior: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        attention = self.combine(self.attention(features), prior)
        return features * attention, attention


class IndependentAttentionBlock(ContinuousAttentionBlock):
    """CBAM-style variant of the CA block: each block's map is computed on its own, ``prior`` is ignored.

    Default kernel 7 is CBAM's spatial-attention kernel (MMNet paper Fig. 3a, the module compared in Table 4).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        attention_kernel: int = 7,
        attention_bn: bool = True,
        always_project_shortcut: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, stride, attention_kernel, attention_bn, always_project_shortcut
        )
        self.prior_pool = nn.Identity()

    def combine(self, attention: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        return attention
