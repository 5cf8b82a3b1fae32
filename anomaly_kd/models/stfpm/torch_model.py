"""STFPM as a plain ``nn.Module``: a frozen pretrained teacher and a same-architecture student."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from anomaly_kd.models.components.backbones import FeatureExtractor, create_feature_extractor
from anomaly_kd.models.components.feature_matching import max_score
from anomaly_kd.models.stfpm.anomaly_map import stfpm_anomaly_map


class STFPMModel(nn.Module):
    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        student: FeatureExtractor | None = None,
    ):
        super().__init__()
        self.teacher = create_feature_extractor(
            backbone, layers, pretrained=pretrained, weights_path=weights_path, frozen=True
        )
        # The authors' student: the teacher's architecture, randomly initialised (torchvision's
        # default init). Simple Student passes a slimmer network with the same output widths.
        self.student = student or create_feature_extractor(backbone, layers, pretrained=False)

    def forward(
        self, images: torch.Tensor, teacher_features: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(teacher levels, student levels); ``teacher_features``: the teacher's, already computed."""
        if teacher_features is None:
            with torch.no_grad():
                teacher_features = self.teacher(images)
        return teacher_features, self.student(images)

    @torch.no_grad()
    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher_features, student_features = self(images)
        maps = stfpm_anomaly_map(teacher_features, student_features, images.shape[-2:])
        return maps, max_score(maps)
