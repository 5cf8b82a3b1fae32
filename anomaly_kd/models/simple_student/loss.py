"""Simple Student loss: STFPM's, unchanged (gdwang08/STFPM main.py ``train_val``; see
:func:`anomaly_kd.models.components.feature_matching.feature_matching_loss`)."""

from anomaly_kd.models.components.feature_matching import feature_matching_loss as simple_student_loss

__all__ = ["simple_student_loss"]
