"""Data sets for anomaly detection; every item follows the batch format in :mod:`.images`."""

from anomaly_kd.data.base import AnomalyDataModule, seeded_split
from anomaly_kd.data.btad import BTAD_CATEGORIES, BTADDataModule
from anomaly_kd.data.folder import FolderDataModule
from anomaly_kd.data.mnist import MNISTDataModule
from anomaly_kd.data.mvtec import MVTEC_CATEGORIES, MVTecDataModule
from anomaly_kd.data.mvtec3d import MVTEC3D_CATEGORIES, MVTec3DDataModule
from anomaly_kd.data.mvtec_ad2 import MVTEC_AD2_CATEGORIES, MVTecAD2DataModule
from anomaly_kd.data.mvtec_loco import MVTEC_LOCO_CATEGORIES, MVTecLOCODataModule
from anomaly_kd.data.synthetic import make_synthetic_mvtec
from anomaly_kd.data.textures import TEXTURE_CATEGORIES, TexturesDataModule
from anomaly_kd.data.visa import VISA_CATEGORIES, VisADataModule

__all__ = [
    "AnomalyDataModule",
    "BTAD_CATEGORIES",
    "BTADDataModule",
    "FolderDataModule",
    "MVTEC3D_CATEGORIES",
    "MVTEC_AD2_CATEGORIES",
    "MVTEC_LOCO_CATEGORIES",
    "MVTec3DDataModule",
    "MVTecAD2DataModule",
    "MVTecLOCODataModule",
    "VISA_CATEGORIES",
    "VisADataModule",
    "MNISTDataModule",
    "MVTEC_CATEGORIES",
    "MVTecDataModule",
    "TEXTURE_CATEGORIES",
    "TexturesDataModule",
    "make_synthetic_mvtec",
    "seeded_split",
]
