"""Feature-pyramid matching pieces shared by STFPM-family methods (STFPM, its ensemble, Simple
Student): distances between channel-wise L2-normalised teacher and student features, the training
loss, and the multiplicative multi-level anomaly map of the STFPM authors' code (gdwang08/STFPM).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def normalized_sq_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` x2 -> ``[B, 1, h, w]``: squared L2 distance of L2-normalised vectors."""
    return (F.normalize(teacher, dim=1) - F.normalize(student, dim=1)).pow(2).sum(dim=1, keepdim=True)


def feature_matching_loss(
    teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Sum over levels of the mean over batch and positions of :func:`normalized_sq_distance`.

    The STFPM paper writes a factor 1/2 in front of the distance; the authors' code has none, and
    we follow the code (the factor only rescales the learning rate).
    """
    loss = teacher[0].new_zeros(())
    for t, s in zip(teacher, student, strict=True):
        loss = loss + normalized_sq_distance(t, s).mean()
    return loss


def multiply_levels(levels: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """STFPM's aggregation: bilinearly resize each level map ``[B,1,h_k,w_k]`` to the finest
    level's resolution (64x64 for a 256 input and ResNet-18 layer1), multiply, then bilinearly
    resize the product to ``size`` (the authors use ``cv2.resize``, the same half-pixel bilinear
    interpolation for upscaling)."""
    base = levels[0].shape[-2:]
    product = torch.ones_like(levels[0])
    for level in levels:
        product = product * F.interpolate(level, size=base, mode="bilinear", align_corners=False)
    return F.interpolate(product, size=tuple(size), mode="bilinear", align_corners=False)


def max_score(maps: torch.Tensor) -> torch.Tensor:
    """Image score: the maximum of each map."""
    return maps.flatten(1).amax(dim=1)
