"""STFPM LightningModule: SGD on the student, checkpoint chosen on validation normals.

The training loop, optimizer and checkpoint rule are the shared STFPM recipe in
:class:`~anomaly_kd.models.components.student_teacher.StudentTeacherModule` (also used by Simple
Student); this class only declares STFPM's hyperparameters and builds its model.
"""

from __future__ import annotations

from collections.abc import Sequence

from anomaly_kd.models.components.backbones import backbone_layers
from anomaly_kd.models.components.student_teacher import StudentTeacherModule
from anomaly_kd.models.stfpm.loss import stfpm_loss
from anomaly_kd.models.stfpm.torch_model import STFPMModel


class STFPM(StudentTeacherModule):
    # The authors keep the epoch whose mean anomaly map on the validation normals is lowest.
    checkpoint_monitor = "val/map_mean"
    checkpoint_mode = "min"
    loss_function = staticmethod(stfpm_loss)

    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
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
        self.hparams.layers = backbone_layers(backbone, layers)  # None: the backbone's own levels
        self.configure_teacher_cache(cache_teacher, cache_teacher_dtype)
        self.model = self.build_model()
        self.input_multiple = max(self.model.teacher.strides)

    def build_model(self) -> STFPMModel:
        hp = self.hparams
        return STFPMModel(hp.backbone, list(hp.layers), hp.pretrained, hp.weights_path)
