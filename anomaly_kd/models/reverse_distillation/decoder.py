"""RD4AD's student decoder: ``de_resnet.py`` in hq-deng/RD4AD (``de_wide_resnet50_2``,
``de_resnet18``).

Three stages ``layer1..layer3`` of ``blocks = (3, 4, 6)`` (Wide-ResNet-50-2) or ``(2, 2, 2)``
(ResNet-18) blocks: the authors' ``ResNet(block, [3, 4, 6, 3])`` builds its layer1..3 from
``layers[0..2]`` in that order, so the stage next to the bottleneck has 3 blocks and the one
producing the finest map has 6 (the encoder's layer1 has 3, its layer3 has 6: the block counts are
not mirrored, the widths are). Each stage doubles the resolution: the first block of a stage
replaces the stride-2 convolution by a 2x2 stride-2 transposed convolution (``deconv2x2``, no
bias: ``conv2`` of the Bottleneck, ``conv1`` of the BasicBlock) and its shortcut is
``deconv2x2(in, out, 2) + BN``. Widths: ``2*c3 -> c3 -> c2 -> c1`` (2048 -> 1024 -> 512 -> 256 for
Wide-ResNet-50-2, whose Bottleneck inner width is ``planes * 128 / 64``). ``forward`` returns the
maps finest first, aligned with teacher levels 1, 2, 3 (``[feature_c, feature_b, feature_a]``).

Initialisation as the authors' ``ResNet.__init__``: ``kaiming_normal_(fan_out, relu)`` for
``nn.Conv2d`` only and BN weight 1 / bias 0; ``nn.ConvTranspose2d`` is not a subclass of
``nn.Conv2d``, so the transposed convolutions keep PyTorch's default init, as in the authors' code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


def deconv2x2(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)


def resnet_init(module: nn.Module) -> None:
    """The authors' ``ResNet.__init__`` init, in module order: ``kaiming_normal_(fan_out, relu)``
    for each ``nn.Conv2d`` (not ``nn.ConvTranspose2d``, as in their code), 1 and 0 for BatchNorm."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class UpBasicBlock(nn.Module):
    """``de_resnet.BasicBlock``: conv1 (deconv2x2 when upsampling, else 3x3), BN, ReLU, 3x3, BN, + shortcut, ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, upsample: nn.Module | None = None, base_width: int = 64):
        super().__init__()
        if base_width != 64:
            raise ValueError("BasicBlock only supports base_width=64")
        self.conv1 = deconv2x2(in_channels, planes) if upsample is not None else conv3x3(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.upsample(x) if self.upsample is not None else x
        return self.relu(out + identity)


class UpBottleneck(nn.Module):
    """``de_resnet.Bottleneck``: 1x1, BN, ReLU, (deconv2x2 when upsampling, else 3x3), BN, ReLU,
    1x1 to ``4 * planes``, BN, + shortcut, ReLU; inner width ``planes * base_width / 64``."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, upsample: nn.Module | None = None, base_width: int = 64):
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = deconv2x2(width, width) if upsample is not None else conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.upsample(x) if self.upsample is not None else x
        return self.relu(out + identity)


UP_BLOCKS: dict[str, type[nn.Module]] = {"basic": UpBasicBlock, "bottleneck": UpBottleneck}


class Decoder(nn.Module):
    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        block: str = "bottleneck",
        blocks: Sequence[int] = (3, 4, 6),
        base_width: int = 64,
    ):
        """``channels``: the teacher's ``(c1, c2, c3)``; the stages output c3, c2, c1."""
        super().__init__()
        block_cls = UP_BLOCKS[block]
        c1, c2, c3 = channels
        width = in_channels
        for name, out_channels, n_blocks in zip(("layer1", "layer2", "layer3"), (c3, c2, c1), blocks):
            setattr(self, name, self._make_stage(block_cls, width, out_channels, n_blocks, base_width))
            width = out_channels
        resnet_init(self)

    @staticmethod
    def _make_stage(block, in_channels: int, out_channels: int, n_blocks: int, base_width: int) -> nn.Sequential:
        planes = out_channels // block.expansion
        upsample = nn.Sequential(deconv2x2(in_channels, out_channels), nn.BatchNorm2d(out_channels))
        layers = [block(in_channels, planes, upsample, base_width)]
        layers += [block(out_channels, planes, None, base_width) for _ in range(1, n_blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.layer1(x)
        b = self.layer2(a)
        c = self.layer3(b)
        return [c, b, a]
