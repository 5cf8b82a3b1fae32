"""STFPM ensemble scored by error + variance (thesis "Feature Vectors Variance", Polidori 2022)."""

from anomaly_kd.models.stfpm_ensemble.lightning_model import STFPMEnsemble
from anomaly_kd.models.stfpm_ensemble.torch_model import STFPMEnsembleModel

__all__ = ["STFPMEnsemble", "STFPMEnsembleModel"]
