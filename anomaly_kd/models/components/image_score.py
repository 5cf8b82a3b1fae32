"""Image scores from anomaly maps under a named rule, to compare rules on the same maps.

- ``model``: the method's own score, as it returned it (STFPM family: the map's maximum; RD4AD:
  the maximum of its map, which its authors smooth with a Gaussian of sigma 4 first);
- ``max``: the map's maximum;
- ``blur<sigma>`` (e.g. ``blur4``): the maximum of the map smoothed by a Gaussian of ``sigma``
  pixels at the model's resolution, scipy's ``gaussian_filter`` defaults (RD4AD's rule, see
  :mod:`.gaussian`). Smoothing spreads a one-pixel peak (a speck) over its neighbours and keeps a
  region's level: it trades isolated peaks for extended ones.

The maps are not changed: only the image score is recomputed.
"""

from __future__ import annotations

import torch

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.gaussian import GaussianBlur2d


def blur_sigma(rule: str) -> float | None:
    """The Gaussian sigma of ``rule`` (None for ``model`` and ``max``); one clear error otherwise."""
    if rule in ("model", "max"):
        return None
    if rule.startswith("blur"):
        try:
            sigma = float(rule[4:])
        except ValueError:
            sigma = float("nan")
        if sigma > 0:
            return sigma
    raise UserError(f"unknown image-score rule {rule!r}: use model, max or blur<sigma> (e.g. blur4)")


def rescore(maps: torch.Tensor, scores: torch.Tensor, rule: str) -> torch.Tensor:
    """Image scores ``[B]`` of ``maps [B, 1, H, W]`` under ``rule`` (``scores``: the method's own)."""
    sigma = blur_sigma(rule)
    if rule == "model":
        return scores
    if sigma is not None:
        maps = GaussianBlur2d(sigma).to(maps.device)(maps.float())
    return maps.flatten(1).amax(dim=1)
