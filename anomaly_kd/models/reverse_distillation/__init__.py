"""Reverse Distillation (RD4AD, Deng & Li, CVPR 2022; code hq-deng/RD4AD)."""

from anomaly_kd.models.reverse_distillation.lightning_model import ReverseDistillation
from anomaly_kd.models.reverse_distillation.torch_model import ReverseDistillationModel

__all__ = ["ReverseDistillation", "ReverseDistillationModel"]
