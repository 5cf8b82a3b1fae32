"""Ensemble loss: the sum over students of each student's STFPM loss against the same teacher
(gdwang08/STFPM main.py ``train_val``, see
:func:`anomaly_kd.models.components.feature_matching.feature_matching_loss`).

The students share no parameters, so the gradient of the sum w.r.t. student m's parameters is the
gradient of student m's own loss; one SGD optimizer over all of them (momentum and weight decay
are per-parameter, element-wise) therefore makes exactly the updates of M independent STFPM runs
that see the same batches in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from anomaly_kd.models.components.feature_matching import feature_matching_loss


def ensemble_losses(
    teacher: Sequence[torch.Tensor], students: Sequence[Sequence[torch.Tensor]]
) -> list[torch.Tensor]:
    """One STFPM loss per student."""
    return [feature_matching_loss(teacher, student) for student in students]


def ensemble_loss(teacher: Sequence[torch.Tensor], students: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    return torch.stack(ensemble_losses(teacher, students)).sum()
