"""Data sets for anomaly detection; every item follows the batch format in :mod:`.images`."""

from anomaly_kd.data.base import AnomalyDataModule, seeded_split
from anomaly_kd.data.mnist import MNISTDataModule
from anomaly_kd.data.mvtec import MVTEC_CATEGORIES, MVTecDataModule
from anomaly_kd.data.synthetic import make_synthetic_mvtec
from anomaly_kd.data.textures import TEXTURE_CATEGORIES, TexturesDataModule

__all__ = [
    "AnomalyDataModule",
    "MNISTDataModule",
    "MVTEC_CATEGORIES",
    "MVTecDataModule",
    "TEXTURE_CATEGORIES",
    "TexturesDataModule",
    "make_synthetic_mvtec",
    "seeded_split",
]
