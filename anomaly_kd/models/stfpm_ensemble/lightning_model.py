"""STFPM ensemble LightningModule: all students trained together, STFPM's recipe for each.

One SGD optimizer over every student's parameters on the sum of their STFPM losses is equivalent
to one SGD per student on the same batches (see :mod:`.loss`): SGD's momentum buffer and weight
decay act on each parameter alone and nothing (no gradient clipping) couples the students.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from anomaly_kd.models.components.base import count_parameters
from anomaly_kd.models.components.student_teacher import StudentTeacherModule
from anomaly_kd.models.stfpm_ensemble.loss import ensemble_losses
from anomaly_kd.models.stfpm_ensemble.torch_model import STFPMEnsembleModel


class STFPMEnsemble(StudentTeacherModule):
    # As STFPM, whose code the thesis builds on: the epoch with the lowest mean anomaly map (here
    # the ensemble map) on validation normals is tested.
    checkpoint_monitor = "val/map_mean"
    checkpoint_mode = "min"

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
        lr: float = 0.4,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        threshold_quantile: float = 0.99,
        fpr_limit: float = 0.3,
        cache_teacher: bool = True,
        cache_teacher_dtype: str = "float32",
    ):
        super().__init__(threshold_quantile=threshold_quantile, fpr_limit=fpr_limit)
        self.save_hyperparameters()
        self.configure_teacher_cache(cache_teacher, cache_teacher_dtype)
        hp = self.hparams
        self.model = STFPMEnsembleModel(
            hp.backbone, list(hp.layers), hp.pretrained, hp.weights_path,
            hp.n_students, hp.seed, hp.terms, hp.std_correction,
        )  # fmt: skip
        self.input_multiple = max(self.model.teacher.strides)

    def training_loss(self, images: torch.Tensor, teacher_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        teacher_features, student_features = self.model(images, teacher_features)
        losses = ensemble_losses(teacher_features, student_features)
        for m, loss in enumerate(losses):
            self.log(f"train/loss_student{m}", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return torch.stack(losses).sum()

    def student_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.students.parameters()

    def model_summary(self) -> dict:
        students = self.model.students
        return {
            "teacher_parameters": count_parameters(self.model.teacher),
            "student_parameters": count_parameters(students[0]),
            "n_students": len(students),
            "students_parameters_total": count_parameters(students),
        }
