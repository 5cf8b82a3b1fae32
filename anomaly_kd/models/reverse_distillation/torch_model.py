"""RD4AD as a plain ``nn.Module``: frozen teacher encoder -> OCBE -> student decoder.

hq-deng/RD4AD main.py ``train``: ``encoder, bn = wide_resnet50_2(pretrained=True)``,
``decoder = de_wide_resnet50_2(pretrained=False)``, ``outputs = decoder(bn(encoder(img)))``. The
encoder is torchvision's architecture and ImageNet weights (``wide_resnet50_2-95faca4d.pth`` =
IMAGENET1K_V1) returning layer1..3; inputs are ImageNet-normalised (``get_data_transforms``), as our
:class:`FeatureExtractor` does. The encoder stays in eval mode (``encoder.eval()``) and out of the
optimizer, i.e. frozen.

Architectures per teacher (:data:`ARCHITECTURES`): the authors' pairs for ``wide_resnet50_2``
(Bottleneck, inner width x2, OCBE stage of 3 blocks, decoder 3/4/6 blocks) and ``resnet18``
(BasicBlock, OCBE stage of 2 blocks, decoder 2/2/2: ``resnet18()`` / ``de_resnet18()``). For
``efficientnet_lite0/1/2`` (ours, no counterpart in the authors' code) the same generic OCBE and
decoder are built from the teacher's channel list (Lite0/1: 24/40/112, Lite2: 24/48/120 at
block1/block2/block4, the backbone's default levels) with BasicBlocks like the ResNet-18 variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import backbone_layers, create_feature_extractor
from anomaly_kd.models.components.gaussian import GaussianBlur2d
from anomaly_kd.models.reverse_distillation.anomaly_map import rd_anomaly_map
from anomaly_kd.models.reverse_distillation.decoder import Decoder
from anomaly_kd.models.reverse_distillation.ocbe import OCBE


@dataclass(frozen=True)
class Architecture:
    block: str  # "bottleneck" | "basic"
    ocbe_blocks: int
    decoder_blocks: tuple[int, int, int]
    base_width: int = 64  # Bottleneck inner width = planes * base_width / 64


ARCHITECTURES: dict[str, Architecture] = {
    # resnet.py wide_resnet50_2: BN_layer(AttnBottleneck, 3), width_per_group = 128;
    # de_resnet.py de_wide_resnet50_2: ResNet(Bottleneck, [3, 4, 6, 3]), width_per_group = 128
    "wide_resnet50_2": Architecture("bottleneck", 3, (3, 4, 6), 128),
    # resnet.py resnet18: BN_layer(AttnBasicBlock, 2); de_resnet.py de_resnet18: [2, 2, 2, 2]
    "resnet18": Architecture("basic", 2, (2, 2, 2)),
    # ours: generic OCBE/decoder from the teacher's channels, ResNet-18-style blocks
    "efficientnet_lite0": Architecture("basic", 2, (2, 2, 2)),
    "efficientnet_lite1": Architecture("basic", 2, (2, 2, 2)),
    "efficientnet_lite2": Architecture("basic", 2, (2, 2, 2)),
}


class ReverseDistillationModel(nn.Module):
    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        gaussian_sigma: float = 4.0,
        gaussian_truncate: float = 4.0,
    ):
        super().__init__()
        if backbone not in ARCHITECTURES:
            raise UserError(
                f"reverse_distillation has no decoder for model.backbone={backbone}: choose one of "
                f"{', '.join(sorted(ARCHITECTURES))}."
            )
        layers = backbone_layers(backbone, layers)
        self.teacher = create_feature_extractor(
            backbone, layers, pretrained=pretrained, weights_path=weights_path, frozen=True
        )
        strides = self.teacher.strides
        if len(strides) != 3 or strides[1] != 2 * strides[0] or strides[2] != 2 * strides[1]:
            raise UserError(
                f"reverse_distillation needs 3 teacher layers at strides s, 2s, 4s; model.layers="
                f"{list(layers)} has strides {strides} (e.g. efficientnet_lite0: block1, block2, block4)."
            )
        arch = ARCHITECTURES[backbone]
        channels = self.teacher.channels
        self.ocbe = OCBE(channels, arch.block, arch.ocbe_blocks, arch.base_width)
        self.decoder = Decoder(self.ocbe.out_channels, channels, arch.block, arch.decoder_blocks, arch.base_width)
        self.blur = GaussianBlur2d(gaussian_sigma, gaussian_truncate)

    @property
    def input_multiple(self) -> int:
        return 2 * max(self.teacher.strides)  # the OCBE halves the deepest teacher level once more

    def forward(
        self, images: torch.Tensor, teacher_features: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher levels 1..3 (``teacher_features`` when already computed) and the decoder's maps
        aligned with them."""
        if teacher_features is None:
            with torch.no_grad():
                teacher_features = self.teacher(images)
        return teacher_features, self.decoder(self.ocbe(teacher_features))

    @torch.no_grad()
    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher_features, student_features = self(images)
        maps = self.blur(rd_anomaly_map(teacher_features, student_features, images.shape[-2:]))
        return maps, maps.flatten(1).amax(dim=1)
