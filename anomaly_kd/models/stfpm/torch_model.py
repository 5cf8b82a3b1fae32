"""STFPM as a plain ``nn.Module``: a frozen pretrained teacher and a same-architecture student.

The plainest use of :class:`~anomaly_kd.models.components.student_teacher.StudentTeacherModel`,
whose forward and anomaly map are the authors' (:func:`anomaly_kd.models.stfpm.anomaly_map.stfpm_anomaly_map`
is the same map as a function of the two feature lists).
"""

from __future__ import annotations

from collections.abc import Sequence

from anomaly_kd.models.components.backbones import FeatureExtractor, create_feature_extractor
from anomaly_kd.models.components.student_teacher import StudentTeacherModel


class STFPMModel(StudentTeacherModel):
    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        student: FeatureExtractor | None = None,
    ):
        teacher = create_feature_extractor(
            backbone, layers, pretrained=pretrained, weights_path=weights_path, frozen=True
        )
        # The authors' student: the teacher's architecture, randomly initialised (torchvision's
        # default init). Simple Student passes a slimmer network with the same output widths.
        super().__init__(teacher, student or create_feature_extractor(backbone, layers, pretrained=False))
