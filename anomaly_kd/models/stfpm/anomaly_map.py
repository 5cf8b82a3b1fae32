"""STFPM anomaly map, as in the authors' ``test`` function (gdwang08/STFPM main.py): per-level
squared distance of normalised features, resized to the finest level, multiplied, resized to the
input size. Image score: the maximum of the map."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from anomaly_kd.models.components.feature_matching import multiply_levels, normalized_sq_distance


def stfpm_anomaly_map(
    teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: Sequence[int]
) -> torch.Tensor:
    levels = [normalized_sq_distance(t, s) for t, s in zip(teacher, student, strict=True)]
    return multiply_levels(levels, size)
