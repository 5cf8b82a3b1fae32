"""STFPM loss, as in the authors' code (gdwang08/STFPM, ``train_val``): per level, the mean over
batch and positions of the squared distance of channel-wise L2-normalised features, summed over
levels (no 1/2 factor: see :func:`feature_matching_loss`)."""

from anomaly_kd.models.components.feature_matching import feature_matching_loss as stfpm_loss

__all__ = ["stfpm_loss"]
