"""Simple Student anomaly map: STFPM's, unchanged (gdwang08/STFPM main.py ``test``): per-level
squared distance of normalised features, resized to the finest level, multiplied, resized to the
input size; image score = max (implemented in
:meth:`anomaly_kd.models.components.student_teacher.StudentTeacherModel.anomaly_map`)."""

from anomaly_kd.models.components.feature_matching import max_score, multiply_levels, normalized_sq_distance

__all__ = ["max_score", "multiply_levels", "normalized_sq_distance"]
