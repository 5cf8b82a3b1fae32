"""Ensemble anomaly map of the thesis "Feature Vectors Variance" (Polidori 2022).

Per level k, with ``t`` the teacher's and ``s_m`` student m's channel-wise L2-normalised vectors:

- ``v_k`` = squared L2 norm of the per-element standard deviation of ``s_1..s_M``, i.e. the sum over
  channels of their variance. ``std_correction=0`` (default): population variance (divide by M),
  the predictive variance of Uninformed Students (Bergmann et al., CVPR 2020, Eq. 7:
  ``1/M sum ||mu_m||^2 - ||mean mu||^2``) that this ensemble score mirrors; ``std_correction=1``
  gives Bessel's correction (divide by M-1, ``torch.std``'s default). The thesis text does not say
  which; with 3 students the choice scales ``v`` by 1.5.
- ``e_k`` = half the squared L2 distance between ``t`` and the mean of the ``s_m`` (the mean is not
  re-normalised).
- level map = ``e_k + v_k`` (``terms='e+v'``), or one term alone (``'e'`` / ``'v'``, the ablation).

The level maps are bilinearly upsampled to the input size (half-pixel centres,
``align_corners=False``, as cv2.resize in STFPM's code) and multiplied; image score = max. Unlike
STFPM (product at the finest level's resolution, then resized) the thesis upsamples each level to
the input size first; bilinear interpolation does not commute with the product, so the two differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

TERMS = ("e+v", "e", "v")


def ensemble_level_map(
    teacher: torch.Tensor, students: Sequence[torch.Tensor], terms: str = "e+v", std_correction: int = 0
) -> torch.Tensor:
    """``[B, C, h, w]`` teacher and M students -> ``[B, 1, h, w]`` level map."""
    t = F.normalize(teacher, dim=1)
    s = torch.stack([F.normalize(x, dim=1) for x in students])  # [M, B, C, h, w]
    level = torch.zeros_like(t[:, :1])
    if "e" in terms:
        level = level + 0.5 * (t - s.mean(dim=0)).pow(2).sum(dim=1, keepdim=True)
    if "v" in terms:
        level = level + s.var(dim=0, correction=std_correction).sum(dim=1, keepdim=True)
    return level


def ensemble_anomaly_map(
    teacher: Sequence[torch.Tensor],
    students: Sequence[Sequence[torch.Tensor]],
    size: Sequence[int],
    terms: str = "e+v",
    std_correction: int = 0,
) -> torch.Tensor:
    """Teacher levels and per-student levels -> ``[B, 1, *size]`` map (product over levels)."""
    product = None
    for k, t in enumerate(teacher):
        level = ensemble_level_map(t, [s[k] for s in students], terms, std_correction)
        level = F.interpolate(level, size=tuple(size), mode="bilinear", align_corners=False)
        product = level if product is None else product * level
    return product
