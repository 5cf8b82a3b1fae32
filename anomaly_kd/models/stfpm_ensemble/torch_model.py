"""STFPM ensemble as a plain ``nn.Module``: one frozen teacher, ``n_students`` STFPM students.

Each student has the teacher's architecture (ResNet-18 up to layer3 by default), randomly
initialised from its own seed ``seed * 1000 + m`` (m = 0..M-1, ``seed`` = the run seed), so the
students differ only by their initialisation (and are reproducible from the run seed). The seed is
used only to build them, inside ``torch.random.fork_rng``: the global RNG stream is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import FeatureExtractor, create_feature_extractor
from anomaly_kd.models.components.feature_matching import max_score, multiply_levels, normalized_sq_distance
from anomaly_kd.models.stfpm_ensemble.anomaly_map import TERMS, ensemble_anomaly_map


def student_seed(run_seed: int, index: int) -> int:
    return int(run_seed) * 1000 + int(index)


def seeded_student(backbone: str, layers: Sequence[str], seed: int) -> FeatureExtractor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_feature_extractor(backbone, layers, pretrained=False)


class STFPMEnsembleModel(nn.Module):
    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        n_students: int = 3,
        seed: int = 0,
        terms: str = "e+v",
        std_correction: int = 0,
    ):
        super().__init__()
        if int(n_students) < 1:
            raise UserError(f"model.n_students={n_students} must be >= 1.")
        if terms not in TERMS:
            raise UserError(f"model.terms={terms!r} must be one of {', '.join(TERMS)}.")
        if "v" in terms and int(n_students) - int(std_correction) < 1:
            raise UserError(
                f"the variance term needs model.n_students > model.std_correction "
                f"(got {n_students} and {std_correction}): use more students or model.terms=e."
            )
        self.terms, self.std_correction = terms, int(std_correction)
        self.teacher = create_feature_extractor(
            backbone, layers, pretrained=pretrained, weights_path=weights_path, frozen=True
        )
        self.students = nn.ModuleList(
            seeded_student(backbone, layers, student_seed(seed, m)) for m in range(int(n_students))
        )

    def forward(
        self, images: torch.Tensor, teacher_features: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Teacher levels (``teacher_features`` when already computed) and, per student, its levels."""
        if teacher_features is None:
            with torch.no_grad():
                teacher_features = self.teacher(images)
        return teacher_features, [student(images) for student in self.students]

    @torch.no_grad()
    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher_features, student_features = self(images)
        maps = ensemble_anomaly_map(
            teacher_features, student_features, images.shape[-2:], self.terms, self.std_correction
        )
        return maps, max_score(maps)

    @torch.no_grad()
    def student_errors(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, M]``: per image, the mean of each student's own STFPM anomaly map (as a single
        STFPM student would be validated: gdwang08/STFPM main.py ``test(...).mean()``)."""
        teacher_features, student_features = self(images)
        errors = []
        for levels in student_features:
            distances = [normalized_sq_distance(t, s) for t, s in zip(teacher_features, levels)]
            errors.append(multiply_levels(distances, images.shape[-2:]).flatten(1).mean(dim=1))
        return torch.stack(errors, dim=1)
