"""Simple Student as a plain ``nn.Module``: STFPM's frozen ResNet-18 teacher and a slim student.

The student is ResNet-18 in which the first 3x3 convolution of every BasicBlock (and its BN) has
``round(width_factor * planes)`` filters instead of ``planes``; the block's second convolution
maps back to ``planes``, so every block output, the stem and the downsample shortcuts keep the
teacher's widths (64/128/256 at layer1-3) and STFPM's feature matching applies unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import FeatureExtractor, create_feature_extractor
from anomaly_kd.models.components.student_teacher import StudentTeacherModel

SUPPORTED_BACKBONES = ("resnet18",)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def slim_resnet18(width_factor: float = 0.5) -> nn.Module:
    """torchvision ``resnet18(weights=None)`` with slimmed BasicBlocks, randomly initialised.

    The new layers get torchvision's ResNet init (``kaiming_normal_(mode='fan_out',
    nonlinearity='relu')`` for convolutions, BN weight 1 / bias 0), like the STFPM authors' student
    (``resnet18(pretrained=False)``).
    """
    if not 0.0 < float(width_factor) <= 1.0:
        raise UserError(f"model.width_factor={width_factor} must be in (0, 1] (1 = STFPM's student).")
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in stage:
            planes = block.conv2.out_channels
            inner = max(1, round(planes * float(width_factor)))
            block.conv1 = _conv3x3(block.conv1.in_channels, inner, stride=block.stride)
            block.bn1 = nn.BatchNorm2d(inner)
            block.conv2 = _conv3x3(inner, planes)
            nn.init.kaiming_normal_(block.conv1.weight, mode="fan_out", nonlinearity="relu")
            nn.init.kaiming_normal_(block.conv2.weight, mode="fan_out", nonlinearity="relu")
    return net


class SimpleStudentModel(StudentTeacherModel):
    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        width_factor: float = 0.5,
    ):
        if backbone not in SUPPORTED_BACKBONES:
            raise UserError(
                f"simple_student slims a ResNet-18 student, so its teacher must be resnet18 "
                f"(64/128/256 channels), not model.backbone={backbone}."
            )
        teacher = create_feature_extractor(
            backbone, layers, pretrained=pretrained, weights_path=weights_path, frozen=True
        )
        student = FeatureExtractor(backbone, slim_resnet18(width_factor), layers)
        super().__init__(teacher, student)


def full_student_parameters(layers: Sequence[str]) -> int:
    """Parameters of STFPM's student (a full ResNet-18 up to the deepest of ``layers``)."""
    with torch.random.fork_rng(devices=[]):
        student = create_feature_extractor("resnet18", layers, pretrained=False)
    return sum(p.numel() for p in student.parameters())
