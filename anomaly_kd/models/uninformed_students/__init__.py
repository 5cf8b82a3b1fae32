"""Uninformed Students: Student-Teacher Anomaly Detection with Discriminative Latent Embeddings
(Bergmann, Fauser, Sattlegger, Steger, CVPR 2020, arXiv 1911.02357). No official code exists."""

from anomaly_kd.models.uninformed_students.lightning_model import UninformedStudents
from anomaly_kd.models.uninformed_students.patch_net import LAYER_TABLES, PatchNet
from anomaly_kd.models.uninformed_students.torch_model import UninformedStudentsModel

__all__ = ["LAYER_TABLES", "PatchNet", "UninformedStudents", "UninformedStudentsModel"]
