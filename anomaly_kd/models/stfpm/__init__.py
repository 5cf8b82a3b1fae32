"""STFPM: Student-Teacher Feature Pyramid Matching (Wang et al., BMVC 2021; code gdwang08/STFPM)."""

from anomaly_kd.models.stfpm.lightning_model import STFPM
from anomaly_kd.models.stfpm.torch_model import STFPMModel

__all__ = ["STFPM", "STFPMModel"]
