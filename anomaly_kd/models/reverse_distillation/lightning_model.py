"""RD4AD LightningModule: Adam on OCBE + decoder, the last epoch's weights are tested.

hq-deng/RD4AD main.py ``train``: ``Adam(list(decoder.parameters()) + list(bn.parameters()),
lr=0.005, betas=(0.5, 0.999))``, 200 epochs, batch 16, 256x256 (values set in
conf/model/reverse_distillation.yaml).

Checkpoint (deviation): the authors evaluate on the *test* set every 10 epochs and overwrite one
checkpoint each time, so their reported numbers are those of the last evaluation (epoch 200);
selecting on test is not allowed here, so ``checkpoint_monitor = None``: the weights after the last
epoch are tested, which is the authors' final checkpoint when training runs all its epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from anomaly_kd.models.components.backbones import backbone_layers
from anomaly_kd.models.components.base import AnomalyModule, count_parameters
from anomaly_kd.models.components.teacher_cache import TeacherCacheMixin
from anomaly_kd.models.reverse_distillation.loss import reverse_distillation_loss
from anomaly_kd.models.reverse_distillation.torch_model import ReverseDistillationModel


class ReverseDistillation(TeacherCacheMixin, AnomalyModule):
    checkpoint_monitor = None
    checkpoint_mode = "min"

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        lr: float = 0.005,
        betas: Sequence[float] = (0.5, 0.999),
        gaussian_sigma: float = 4.0,
        gaussian_truncate: float = 4.0,
        threshold_quantile: float = 0.99,
        fpr_limit: float = 0.3,
        cache_teacher: bool = True,
        cache_teacher_dtype: str = "float32",
    ):
        super().__init__(threshold_quantile=threshold_quantile, fpr_limit=fpr_limit)
        self.save_hyperparameters()
        self.hparams.layers = backbone_layers(backbone, layers)  # None: the backbone's own levels
        self.configure_teacher_cache(cache_teacher, cache_teacher_dtype)
        hp = self.hparams
        self.model = ReverseDistillationModel(
            hp.backbone, list(hp.layers), hp.pretrained, hp.weights_path, hp.gaussian_sigma, hp.gaussian_truncate
        )
        self.input_multiple = self.model.input_multiple

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images = batch["image"]  # the encoder's features from the teacher-feature cache when it is on
        teacher_features, student_features = self.model(images, self.teacher_features(batch, images))
        loss = reverse_distillation_loss(teacher_features, student_features)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(images))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        params = list(self.model.decoder.parameters()) + list(self.model.ocbe.parameters())
        return torch.optim.Adam(params, lr=hp.lr, betas=tuple(hp.betas))

    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.anomaly_map(images)

    def model_summary(self) -> dict:
        ocbe, decoder = count_parameters(self.model.ocbe), count_parameters(self.model.decoder)
        return {
            "teacher_parameters": count_parameters(self.model.teacher),
            "ocbe_parameters": ocbe,
            "decoder_parameters": decoder,
            "trainable_parameters": ocbe + decoder,
        }
