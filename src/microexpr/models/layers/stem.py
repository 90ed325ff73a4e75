"""The motion stem shared by MMNet and CVA-FPF, and the ResNet initialisation of their convolutional branch.

Both papers' reference code run ``apex - onset`` through conv3x3 3->180 stride 2 + BN + ReLU, then
conv3x3 180->128 + BN + ReLU (224² -> 128x112x112), and initialise everything after the first conv with
Kaiming-normal (fan_out) convolutions and unit/zero BatchNorm (torchvision's ResNet rule).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["STEM_CHANNELS", "init_resnet_", "motion_stem"]

STEM_CHANNELS: tuple[int, int] = (180, 128)


def motion_stem(channels: tuple[int, int] = STEM_CHANNELS) -> nn.Sequential:
    """conv3x3(3->c0, stride 2) -> BN -> ReLU -> conv3x3(c0->c1) -> BN -> ReLU, no conv biases (halves H and W)."""
    first, second = channels
    return nn.Sequential(
        nn.Conv2d(3, first, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(first),
        nn.ReLU(inplace=True),
        nn.Conv2d(first, second, 3, padding=1, bias=False),
        nn.BatchNorm2d(second),
        nn.ReLU(inplace=True),
    )


def init_resnet_(modules: Iterable[nn.Module]) -> None:
    """Kaiming-normal (fan_out, relu) for every Conv2d, weight 1 / bias 0 for every BatchNorm2d, in order."""
    for module in modules:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
