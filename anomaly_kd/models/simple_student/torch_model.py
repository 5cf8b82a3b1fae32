"""Simple Student as a plain ``nn.Module``: STFPM's frozen teacher and a slim student.

ResNet-18 (the thesis's teacher): the student is ResNet-18 in which the first 3x3 convolution of
every BasicBlock (and its BN) has ``round(width_factor * planes)`` filters instead of ``planes``;
the block's second convolution maps back to ``planes``, so every block output, the stem and the
downsample shortcuts keep the teacher's widths (64/128/256 at layer1-3) and STFPM's feature
matching applies unchanged.

EfficientNet-Lite0/1/2 (ours, for the offline teachers): the same rule applied to the inverted
residual blocks: the expansion (1x1 conv, depthwise conv and their BNs) has
``round(width_factor * expanded)`` channels instead of ``expanded`` (expansion ratio 6 -> 3 at
0.5); each block's projection maps back to its output width, so block outputs keep the teacher's
widths. The first block (depthwise separable, no expansion) is unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import (
    FeatureExtractor,
    backbone_layers,
    create_feature_extractor,
)
from anomaly_kd.models.components.student_teacher import StudentTeacherModel

SUPPORTED_BACKBONES = ("resnet18", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _check_width_factor(width_factor: float) -> None:
    if not 0.0 < float(width_factor) <= 1.0:
        raise UserError(f"model.width_factor={width_factor} must be in (0, 1] (1 = STFPM's student).")


def slim_resnet18(width_factor: float = 0.5) -> nn.Module:
    """torchvision ``resnet18(weights=None)`` with slimmed BasicBlocks, randomly initialised.

    The new layers get torchvision's ResNet init (``kaiming_normal_(mode='fan_out',
    nonlinearity='relu')`` for convolutions, BN weight 1 / bias 0), like the STFPM authors' student
    (``resnet18(pretrained=False)``).
    """
    _check_width_factor(width_factor)
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


def _resized_conv(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """``conv`` (timm's Conv2d or Conv2dSame, kernel, stride and padding kept) with new widths, a
    depthwise conv staying depthwise, initialised as timm initialises EfficientNets
    (``_init_weight_goog``: normal(0, sqrt(2 / fan_out)), fan_out = k*k*out/groups)."""
    new = copy.deepcopy(conv)
    groups = in_channels if conv.groups == conv.in_channels and conv.groups > 1 else 1
    new.in_channels, new.out_channels, new.groups = in_channels, out_channels, groups
    k = conv.kernel_size
    new.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *k))
    fan_out = k[0] * k[1] * out_channels // groups
    nn.init.normal_(new.weight, 0.0, math.sqrt(2.0 / fan_out))
    return new


def _resized_bn(bn: nn.BatchNorm2d, features: int) -> nn.BatchNorm2d:
    """``bn`` (timm's BatchNormAct2d: activation kept) over ``features`` channels, reset."""
    new = copy.deepcopy(bn)
    new.num_features = features
    new.weight = nn.Parameter(torch.ones(features))
    new.bias = nn.Parameter(torch.zeros(features))
    new.register_buffer("running_mean", torch.zeros(features))
    new.register_buffer("running_var", torch.ones(features))
    return new


def slim_efficientnet_lite(variant: int, width_factor: float = 0.5) -> nn.Module:
    """timm ``tf_efficientnet_lite<variant>`` (random init) whose inverted residual blocks expand
    to ``round(width_factor * expanded)`` channels; block inputs and outputs keep their widths."""
    _check_width_factor(width_factor)
    import timm

    net = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    for stage in net.blocks:
        for block in stage:
            if not hasattr(block, "conv_pwl"):  # depthwise separable: no expansion to slim
                continue
            inner = max(1, round(block.conv_pw.out_channels * float(width_factor)))
            block.conv_pw = _resized_conv(block.conv_pw, block.conv_pw.in_channels, inner)
            block.bn1 = _resized_bn(block.bn1, inner)
            block.conv_dw = _resized_conv(block.conv_dw, inner, inner)
            block.bn2 = _resized_bn(block.bn2, inner)
            block.conv_pwl = _resized_conv(block.conv_pwl, inner, block.conv_pwl.out_channels)
    return net


def slim_student(backbone: str, width_factor: float) -> nn.Module:
    if backbone == "resnet18":
        return slim_resnet18(width_factor)
    return slim_efficientnet_lite(int(backbone[-1]), width_factor)


class SimpleStudentModel(StudentTeacherModel):
    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        width_factor: float = 0.5,
    ):
        if backbone not in SUPPORTED_BACKBONES:
            raise UserError(
                f"simple_student has no slim student for model.backbone={backbone}: choose one of "
                f"{', '.join(SUPPORTED_BACKBONES)}."
            )
        layers = backbone_layers(backbone, layers)
        teacher = create_feature_extractor(
            backbone, layers, pretrained=pretrained, weights_path=weights_path, frozen=True
        )
        student = FeatureExtractor(backbone, slim_student(backbone, width_factor), layers)
        super().__init__(teacher, student)


def full_student_parameters(layers: Sequence[str], backbone: str = "resnet18") -> int:
    """Parameters of STFPM's student (the full ``backbone`` up to the deepest of ``layers``)."""
    with torch.random.fork_rng(devices=[]):
        student = create_feature_extractor(backbone, layers, pretrained=False)
    return sum(p.numel() for p in student.parameters())
