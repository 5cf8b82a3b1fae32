"""Scores of Uninformed Students (Bergmann et al., CVPR 2020, Sec. 3.3).

Per pixel and scale, with mu_i(r, c) the outputs of the M students and y(r, c) the teacher's
descriptor normalised with the training statistics:

- regression error  e = || (1/M) sum_i mu_i - y ||^2
- predictive variance v = (1/M) sum_i ||mu_i||^2 - ||(1/M) sum_i mu_i||^2

Each is normalised with its mean and standard deviation over all pixels of the validation normals
(never test images), e~ = (e - e_mean) / e_std, v~ likewise, and the anomaly score of a scale is
e~ + v~. With several receptive fields the final map is the average of the scales' scores.
``score="error"`` or ``"variance"`` keeps one of the two terms (an ablation in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SCORES = ("both", "error", "variance")


def regression_error(students: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """students ``[M, B, d, H, W]``, target ``[B, d, H, W]`` -> ``[B, H, W]``."""
    return (students.mean(dim=0) - target).pow(2).sum(dim=1)


def predictive_variance(students: torch.Tensor) -> torch.Tensor:
    """``[M, B, d, H, W]`` -> ``[B, H, W]``: the mean squared norm minus the squared norm of the
    mean, computed as the (biased) variance over students summed over dimensions (the same number,
    without the cancellation)."""
    mean = students.mean(dim=0, keepdim=True)
    return (students - mean).pow(2).sum(dim=2).mean(dim=0)


def mean_std(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation over all elements (float64 accumulation)."""
    v = values.double()
    return float(v.mean()), float(v.std(unbiased=False))


def normalised_terms(
    errors: Sequence[torch.Tensor],
    variances: Sequence[torch.Tensor],
    stats: torch.Tensor,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per scale ``(e~, v~)``: ``(e - e_mean) / e_std`` and ``(v - v_mean) / v_std`` with
    ``stats[s] = (e_mean, e_std, v_mean, v_std)``."""
    terms = []
    for s, (e, v) in enumerate(zip(errors, variances, strict=True)):
        e_mean, e_std, v_mean, v_std = (float(x) for x in stats[s])
        terms.append(((e - e_mean) / max(e_std, 1e-12), (v - v_mean) / max(v_std, 1e-12)))
    return terms


def combine_terms(terms: Sequence[tuple[torch.Tensor, torch.Tensor]], score: str = "both") -> torch.Tensor:
    """:func:`normalised_terms` ``[B, H, W]`` -> ``[B, 1, H, W]``: the average over scales of
    e~ + v~ (``score="both"``), or of one of the two."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    total = torch.zeros_like(terms[0][0])
    for e, v in terms:
        if score in ("both", "error"):
            total = total + e
        if score in ("both", "variance"):
            total = total + v
    return (total / len(terms)).unsqueeze(1)


def combine_scales(
    errors: Sequence[torch.Tensor],
    variances: Sequence[torch.Tensor],
    stats: torch.Tensor,
    score: str = "both",
) -> torch.Tensor:
    """Per-scale ``[B, H, W]`` maps and ``stats[s] = (e_mean, e_std, v_mean, v_std)`` ->
    ``[B, 1, H, W]``: the average over scales of the normalised score."""
    return combine_terms(normalised_terms(errors, variances, stats), score)
