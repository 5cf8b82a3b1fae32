"""Losses of Uninformed Students (Bergmann et al., CVPR 2020, Sec. 3.1-3.2).

Teacher pretraining, L(T^) = lambda_k L_k + lambda_m L_m + lambda_c L_c:

- :func:`distillation_loss` L_k = ||D(T^(p)) - P(p)||^2, the decoded descriptor against the
  pretrained network's descriptor of the same patch (mean over the minibatch).
- :func:`triplet_loss` L_m = max(0, delta + d+ - d-), d+ = ||T^(p) - T^(p+)||^2,
  d- = min(||T^(p) - T^(p-)||^2, ||T^(p+) - T^(p-)||^2): in-triplet hard negative with anchor swap
  (Balntas et al., BMVC 2016), mean over the minibatch.
- :func:`compactness_loss` L_c. The paper: the sum of the off-diagonal entries c_ij of "the
  correlation matrix computed over all descriptors of the minibatch". ``over="dimensions"``
  (default): the descriptors are the observations, so the matrix is the d x d correlation of the
  descriptor DIMENSIONS (each standardised over the batch) -- the usual meaning of a correlation
  matrix computed over samples, and L2-Net's "descriptor compactness" term (Tian et al., CVPR
  2017) that the loss is named after: it decorrelates the dimensions, i.e. makes the d numbers
  less redundant. ``over="patches"``: the public re-implementations (LuyaooChen
  teacher_train.py, denguir src/utils.py ``compactness_loss``) standardise each descriptor over
  its own d values and correlate the PATCHES with each other (an N x N matrix, divided by d - 1),
  summing the squares of the upper triangle. The paper prints a signed sum, which is lowest for
  anti-correlated entries, not for decorrelated ones, so by default we sum the squares
  (``form="squared"``; L2-Net squares too); ``form="signed"`` gives the printed formula.

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


def patch_correlation_matrix(descriptors: torch.Tensor) -> torch.Tensor:
    """``[N, d]`` -> ``[N, N]``: correlation of the patches, each descriptor standardised over its
    own d values (unbiased std), products summed over the d values and divided by d - 1 (the
    public re-implementations' ``compactness_loss``)."""
    if descriptors.shape[1] < 2:
        raise ValueError("the patch compactness loss needs descriptors of at least 2 dimensions")
    z = (descriptors - descriptors.mean(dim=1, keepdim=True)) / descriptors.std(dim=1, keepdim=True)
    return z @ z.T / (descriptors.shape[1] - 1)


COMPACTNESS_OVER = ("dimensions", "patches")


def compactness_loss(descriptors: torch.Tensor, form: str = "squared", over: str = "dimensions") -> torch.Tensor:
    """``[N, d]`` -> scalar. ``over="dimensions"``: the off-diagonal correlations of the
    descriptor dimensions (d x d), summed (``form="signed"``, as printed) or their squares summed
    (``"squared"``, the default). ``over="patches"``: the correlations between the patches
    (N x N); ``squared`` sums the squares of the upper triangle (i < j), exactly the public
    re-implementations, ``signed`` sums every off-diagonal entry."""
    if form not in ("squared", "signed"):
        raise ValueError(f"compactness form must be 'squared' or 'signed', got {form!r}")
    if over == "patches":
        corr = patch_correlation_matrix(descriptors)
        if form == "squared":
            return torch.triu(corr, diagonal=1).pow(2).sum()
    elif over == "dimensions":
        corr = correlation_matrix(descriptors)
    else:
        raise ValueError(f"compactness_over must be 'dimensions' or 'patches', got {over!r}")
    off = corr - torch.diag_embed(torch.diagonal(corr))
    return off.pow(2).sum() if form == "squared" else off.sum()


def student_loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B, d, H, W]`` x2 (target already normalised) -> scalar: mean over batch and positions of
    the squared L2 distance of the descriptors."""
    return (student - target).pow(2).sum(dim=1).mean()
