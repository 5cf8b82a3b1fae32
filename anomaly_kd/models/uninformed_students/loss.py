"""Losses of Uninformed Students (Bergmann et al., CVPR 2020, Sec. 3.1-3.2).

Teacher pretraining, L(T^) = lambda_k L_k + lambda_m L_m + lambda_c L_c:

- :func:`distillation_loss` L_k = ||D(T^(p)) - P(p)||^2, the decoded descriptor against the
  pretrained network's descriptor of the same patch (mean over the minibatch).
- :func:`triplet_loss` L_m = max(0, delta + d+ - d-), d+ = ||T^(p) - T^(p+)||^2,
  d- = min(||T^(p) - T^(p-)||^2, ||T^(p+) - T^(p-)||^2): in-triplet hard negative with anchor swap
  (Balntas et al., BMVC 2016), mean over the minibatch.
- :func:`compactness_loss` L_c on the correlation matrix of the descriptor DIMENSIONS computed over
  the minibatch (each dimension standardised over the batch; a d x d matrix). The paper prints
  sum_{i != j} c_ij; a signed sum is lowest for anti-correlated dimensions, not for decorrelated
  ones, so by default we sum the squares, as in L2-Net's compactness term (Tian et al., CVPR 2017),
  where "descriptor compactness" comes from. ``form="signed"`` gives the printed formula.

Students, L(S_i) = mean over positions of ||S_i(r, c) - (T(r, c) - mu) / sigma||^2
(:func:`student_loss`), mu and sigma the teacher's per-dimension mean and std on the training set.
"""

from __future__ import annotations

import torch

EPS = 1e-8


def distillation_loss(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[N, n]`` x2 -> scalar: mean over patches of the squared L2 distance."""
    return (decoded - target).pow(2).sum(dim=1).mean()


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """``[N, d]`` x3 -> scalar: triplet margin loss on squared distances with anchor swap."""
    d_pos = (anchor - positive).pow(2).sum(dim=1)
    d_neg = torch.minimum(
        (anchor - negative).pow(2).sum(dim=1), (positive - negative).pow(2).sum(dim=1)
    )
    return torch.clamp(margin + d_pos - d_neg, min=0).mean()


def correlation_matrix(descriptors: torch.Tensor) -> torch.Tensor:
    """``[N, d]`` -> ``[d, d]``: Pearson correlation of the d dimensions over the N samples."""
    if descriptors.shape[0] < 2:
        raise ValueError("the compactness loss needs at least 2 descriptors in the minibatch")
    centred = descriptors - descriptors.mean(dim=0, keepdim=True)
    z = centred / (centred.pow(2).mean(dim=0, keepdim=True).sqrt() + EPS)
    return z.T @ z / descriptors.shape[0]


def compactness_loss(descriptors: torch.Tensor, form: str = "squared") -> torch.Tensor:
    """``[N, d]`` -> scalar: off-diagonal correlations of the descriptor dimensions, summed
    (``form="signed"``, as printed) or their squares summed (``"squared"``, the default)."""
    corr = correlation_matrix(descriptors)
    off = corr - torch.diag_embed(torch.diagonal(corr))
    if form == "squared":
        return off.pow(2).sum()
    if form == "signed":
        return off.sum()
    raise ValueError(f"compactness form must be 'squared' or 'signed', got {form!r}")


def student_loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B, d, H, W]`` x2 (target already normalised) -> scalar: mean over batch and positions of
    the squared L2 distance of the descriptors."""
    return (student - target).pow(2).sum(dim=1).mean()
