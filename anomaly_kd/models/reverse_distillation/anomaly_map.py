"""RD4AD anomaly map, as ``cal_anomaly_map(..., amap_mode='a')`` + ``gaussian_filter(sigma=4)`` in
the authors' ``evaluation`` (hq-deng/RD4AD test.py):

- per level ``1 - F.cosine_similarity(teacher, decoder)`` over channels (dim 1, eps 1e-8);
- bilinear upsampling to the input size with ``align_corners=True`` (the authors' call; the issue
  text says only "bilinear", and STFPM-family maps here use ``align_corners=False``);
- sum over levels (mode ``'a'``, not the product of mode ``'mul'``);
- Gaussian smoothing with sigma 4 (scipy defaults, see
  :class:`anomaly_kd.models.components.gaussian.GaussianBlur2d`), applied by the model;
- image score: the maximum of the smoothed map (``np.max(anomaly_map)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def rd_anomaly_map(
    teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: Sequence[int]
) -> torch.Tensor:
    """``[B, 1, *size]`` sum over levels of the upsampled ``1 - cos`` maps (before smoothing)."""
    total = None
    for t, s in zip(teacher, student, strict=True):
        level = (1 - F.cosine_similarity(t, s, dim=1)).unsqueeze(1)
        level = F.interpolate(level, size=tuple(size), mode="bilinear", align_corners=True)
        total = level if total is None else total + level
    return total
