"""One-class bottleneck embedding (OCBE) of RD4AD: ``BN_layer`` in hq-deng/RD4AD resnet.py.

From the teacher's three levels ``f1, f2, f3`` (channels ``c1, c2, c3`` at strides s, 2s, 4s):

- multi-scale fusion (``BN_layer._forward_impl``):
  ``l1 = relu(bn2(conv2(relu(bn1(conv1(f1))))))`` with ``conv1: c1->c2`` and ``conv2: c2->c3``, and
  ``l2 = relu(bn3(conv3(f2)))`` with ``conv3: c2->c3``, all 3x3, stride 2, no bias;
  ``cat([l1, l2, f3])`` -> ``3*c3`` channels at stride 4s;
- one ResNet stage (``BN_layer._make_layer(block, 512, layers, stride=2)``): its first block takes
  the ``3*c3`` channels with stride 2 and a ``conv1x1(3*c3, out, stride 2) + BN`` shortcut; output
  ``2*c3`` channels at stride 8s (2048 at 8x8 for Wide-ResNet-50-2 and a 256 input, 512 for
  ResNet-18). The blocks are torchvision's ``Bottleneck`` / ``BasicBlock``, identical to the
  authors' ``AttnBottleneck`` / ``AttnBasicBlock`` (their attention lines are commented out).

Initialisation as ``BN_layer.__init__``: ``kaiming_normal_(mode='fan_out', nonlinearity='relu')``
for every ``nn.Conv2d``, BN weight 1 / bias 0. The module names match the authors' (``conv1..3``,
``bn1..3``, ``bn_layer``). The authors' ``conv4``/``bn4`` (1x1, ``4*c3 -> 2*c3``) are built but
never used in ``forward`` (so they are never trained); they are left out here (the outputs are the
same, 8.4M fewer parameters for Wide-ResNet-50-2, and DDP needs no unused-parameter search).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from anomaly_kd.models.reverse_distillation.decoder import resnet_init

BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class OCBE(nn.Module):
    def __init__(
        self, channels: Sequence[int], block: str = "bottleneck", n_blocks: int = 3, base_width: int = 64
    ):
        super().__init__()
        c1, c2, c3 = channels
        self.out_channels = 2 * c3
        self.conv1 = conv3x3(c1, c2, 2)
        self.bn1 = nn.BatchNorm2d(c2)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(c2, c3, 2)
        self.bn2 = nn.BatchNorm2d(c3)
        self.conv3 = conv3x3(c2, c3, 2)
        self.bn3 = nn.BatchNorm2d(c3)
        self.bn_layer = self._make_stage(BLOCKS[block], 3 * c3, self.out_channels, n_blocks, base_width)
        resnet_init(self)

    @staticmethod
    def _make_stage(block, in_channels: int, out_channels: int, n_blocks: int, base_width: int) -> nn.Sequential:
        planes = out_channels // block.expansion
        shortcut = nn.Sequential(conv1x1(in_channels, out_channels, 2), nn.BatchNorm2d(out_channels))
        layers = [block(in_channels, planes, 2, shortcut, base_width=base_width)]
        layers += [block(out_channels, planes, base_width=base_width) for _ in range(1, n_blocks)]
        return nn.Sequential(*layers)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = features
        l1 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(f1))))))
        l2 = self.relu(self.bn3(self.conv3(f2)))
        return self.bn_layer(torch.cat([l1, l2, f3], dim=1)).contiguous()
