"""STFPM LightningModule: SGD on the student, checkpoint chosen on validation normals."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from anomaly_kd.models.components.base import AnomalyModule, count_parameters
from anomaly_kd.models.stfpm.loss import stfpm_loss
from anomaly_kd.models.stfpm.torch_model import STFPMModel


class STFPM(AnomalyModule):
    # The authors keep the epoch whose mean anomaly map on the validation normals is lowest.
    checkpoint_monitor = "val/map_mean"
    checkpoint_mode = "min"

    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        lr: float = 0.4,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        threshold_quantile: float = 0.99,
        fpr_limit: float = 0.3,
    ):
        super().__init__(threshold_quantile=threshold_quantile, fpr_limit=fpr_limit)
        self.save_hyperparameters()
        self.model = self.build_model()
        self.input_multiple = max(self.model.teacher.strides)

    def build_model(self) -> STFPMModel:
        hp = self.hparams
        return STFPMModel(hp.backbone, list(hp.layers), hp.pretrained, hp.weights_path)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        teacher_features, student_features = self.model(batch["image"])
        loss = stfpm_loss(teacher_features, student_features)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(
            self.model.student.parameters(),
            lr=hp.lr,
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
        )

    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.anomaly_map(images)

    def model_summary(self) -> dict[str, int]:
        return {
            "teacher_parameters": count_parameters(self.model.teacher),
            "student_parameters": count_parameters(self.model.student),
        }
