"""Simple Student LightningModule: STFPM's recipe (SGD, STFPM loss, checkpoint on validation
normals) with the slim student of :mod:`.torch_model`."""

from __future__ import annotations

from collections.abc import Sequence

from anomaly_kd.models.components.backbones import backbone_layers
from anomaly_kd.models.components.base import count_parameters
from anomaly_kd.models.components.student_teacher import StudentTeacherModule
from anomaly_kd.models.simple_student.loss import simple_student_loss
from anomaly_kd.models.simple_student.torch_model import SimpleStudentModel, full_student_parameters


class SimpleStudent(StudentTeacherModule):
    # As STFPM: the epoch with the lowest mean anomaly map on validation normals is tested.
    checkpoint_monitor = "val/map_mean"
    checkpoint_mode = "min"
    loss_function = staticmethod(simple_student_loss)

    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        width_factor: float = 0.5,
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
        self.hparams.layers = backbone_layers(backbone, layers)  # None: the backbone's own levels
        hp = self.hparams
        self.model = SimpleStudentModel(
            hp.backbone, list(hp.layers), hp.pretrained, hp.weights_path, hp.width_factor
        )
        self.input_multiple = max(self.model.teacher.strides)

    def model_summary(self) -> dict:
        student = count_parameters(self.model.student)
        full = full_student_parameters(self.model.teacher.layers, self.hparams.backbone)
        return {
            "teacher_parameters": count_parameters(self.model.teacher),
            "student_parameters": student,
            "stfpm_student_parameters": full,
            "student_to_stfpm_ratio": student / full,
            "width_factor": float(self.hparams.width_factor),
        }
