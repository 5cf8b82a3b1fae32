"""The STFPM training recipe shared by STFPM and Simple Student (and its pieces by the ensemble).

:class:`StudentTeacherModel`: a frozen teacher and a trainable student, both
:class:`~anomaly_kd.models.components.backbones.FeatureExtractor` returning the same levels;
anomaly map as the STFPM authors' ``test`` (gdwang08/STFPM main.py).
:class:`StudentTeacherModule`: the LightningModule of gdwang08/STFPM main.py ``train_val``: STFPM
loss, SGD on the student parameters, the checkpoint of the epoch with the lowest mean anomaly map
on validation normals. Subclasses declare their hyperparameters (``lr``, ``momentum``,
``weight_decay``, ...) in ``__init__``, call ``save_hyperparameters()`` and set ``self.model``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from anomaly_kd.models.components.backbones import FeatureExtractor
from anomaly_kd.models.components.base import AnomalyModule, count_parameters
from anomaly_kd.models.components.teacher_cache import TeacherCacheMixin
from anomaly_kd.models.components.feature_matching import (
    feature_matching_loss,
    max_score,
    multiply_levels,
    normalized_sq_distance,
)


class StudentTeacherModel(nn.Module):
    def __init__(self, teacher: FeatureExtractor, student: FeatureExtractor):
        super().__init__()
        if list(teacher.channels) != list(student.channels):
            raise ValueError(f"student channels {student.channels} != teacher's {teacher.channels}")
        self.teacher = teacher
        self.student = student

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
        levels = [normalized_sq_distance(t, s) for t, s in zip(teacher_features, student_features)]
        maps = multiply_levels(levels, images.shape[-2:])
        return maps, max_score(maps)


class StudentTeacherModule(TeacherCacheMixin, AnomalyModule):
    """STFPM's training loop; ``self.model`` must have ``teacher`` and ``anomaly_map``, and its
    ``forward(images, teacher_features=None)``. The frozen teacher's features of the training
    images come from the teacher-feature cache when it is on (``model.cache_teacher``)."""

    # The STFPM authors keep the epoch whose mean anomaly map on the validation normals is lowest.
    checkpoint_monitor = "val/map_mean"
    checkpoint_mode = "min"

    model: nn.Module
    #: (teacher_features, student_features) -> scalar loss; a method may name its own copy
    loss_function = staticmethod(feature_matching_loss)

    def training_loss(self, images: torch.Tensor, teacher_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        teacher_features, student_features = self.model(images, teacher_features)
        return self.loss_function(teacher_features, student_features)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images = batch["image"]
        loss = self.training_loss(images, self.teacher_features(batch, images))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(images))
        return loss

    def student_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.student.parameters()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # gdwang08/STFPM main.py: optim.SGD(student.parameters(), lr, momentum, weight_decay)
        hp = self.hparams
        return torch.optim.SGD(
            self.student_parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )

    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.anomaly_map(images)

    def model_summary(self) -> dict:
        return {
            "teacher_parameters": count_parameters(self.model.teacher),
            "student_parameters": count_parameters(self.model.student),
        }


__all__ = ["StudentTeacherModel", "StudentTeacherModule"]
