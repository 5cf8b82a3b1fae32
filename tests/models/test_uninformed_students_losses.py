"""Uninformed Students losses and scores on hand-made batches."""

from __future__ import annotations

import math

import pytest
import torch

from anomaly_kd.models.uninformed_students.anomaly_map import (
    combine_scales,
    predictive_variance,
    regression_error,
)
from anomaly_kd.models.uninformed_students.loss import (
    compactness_loss,
    correlation_matrix,
    distillation_loss,
    student_loss,
    triplet_loss,
)


def test_distillation_loss_is_mean_squared_distance():
    decoded = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert distillation_loss(decoded, target).item() == pytest.approx((4 + 9) / 2)


def test_triplet_loss_uses_the_harder_negative_anchor_swap():
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # d+ = 1
    # first: d(a,n) = 9, d(p,n) = 4 -> d- = 4 -> max(0, 1 + 1 - 4) = 0
    # second: d(a,n) = 2, d(p,n) = 1 -> d- = 1 (the swap picks the positive) -> 1 + 1 - 1 = 1
    negative = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    assert triplet_loss(anchor, positive, negative, margin=1.0).item() == pytest.approx(0.5)
    assert triplet_loss(anchor[:1], positive[:1], negative[:1], margin=4.0).item() == pytest.approx(1.0)


def _hadamard(n: int) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def test_compactness_is_zero_for_decorrelated_descriptors():
    # columns 1..7 of an 8x8 Hadamard matrix: zero-mean, mutually orthogonal -> identity correlation
    descriptors = _hadamard(8)[:, 1:] * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 4.0, 0.1]) + 5.0
    assert torch.allclose(correlation_matrix(descriptors), torch.eye(7), atol=1e-6)
    assert compactness_loss(descriptors).item() == pytest.approx(0.0, abs=1e-6)
    assert compactness_loss(descriptors, form="signed").item() == pytest.approx(0.0, abs=1e-6)


def test_compactness_is_over_descriptor_dimensions_not_samples():
    a = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0, 0.0])
    same = torch.stack([a, 2 * a + 1, -a], dim=1)  # N = 6 samples, d = 3 dimensions
    corr = correlation_matrix(same)
    assert corr.shape == (3, 3)
    assert torch.allclose(corr, torch.tensor([[1.0, 1, -1], [1, 1, -1], [-1, -1, 1]]), atol=1e-6)
    assert compactness_loss(same).item() == pytest.approx(6.0, abs=1e-5)  # six off-diagonal +-1
    assert compactness_loss(same, form="signed").item() == pytest.approx(2 - 4, abs=1e-5)
    with pytest.raises(ValueError):
        compactness_loss(same, form="abs")


def test_compactness_gradient_decorrelates():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    x = torch.cat([x, x[:, :1] + 0.1 * torch.randn(64, 1)], dim=1).requires_grad_(True)
    optimizer = torch.optim.SGD([x], lr=0.5)
    start = compactness_loss(x).item()
    assert correlation_matrix(x)[0, 8].item() > 0.99
    for _ in range(100):
        optimizer.zero_grad()
        compactness_loss(x).backward()
        optimizer.step()
    assert compactness_loss(x).item() < 0.5 * start
    assert abs(correlation_matrix(x)[0, 8].item()) < 0.2


def test_student_loss_mean_over_positions_of_squared_norm():
    student = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])  # positions: (1, 1) and (0, 2)
    assert student_loss(student, target).item() == pytest.approx((2 + 4) / 2)


def test_regression_error_and_predictive_variance_by_hand():
    # M = 2 students, B = 1, d = 2, one pixel
    students = torch.tensor([[1.0, 0.0], [3.0, 2.0]]).view(2, 1, 2, 1, 1)
    target = torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
    mean = torch.tensor([2.0, 1.0])
    e = regression_error(students, target)
    assert e.shape == (1, 1, 1) and e.item() == pytest.approx(1.0)  # ||(2,1) - (1,1)||^2
    v_formula = (1.0 + 13.0) / 2 - mean.pow(2).sum().item()  # mean ||mu_i||^2 - ||mean||^2 = 2
    assert predictive_variance(students).item() == pytest.approx(v_formula)


def test_combine_scales_normalises_and_averages():
    e = [torch.full((1, 2, 2), 3.0), torch.full((1, 2, 2), 10.0)]
    v = [torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 4.0)]
    stats = torch.tensor([[1.0, 2.0, 0.0, 0.5], [0.0, 5.0, 2.0, 1.0]])
    both = combine_scales(e, v, stats, "both")
    assert both.shape == (1, 1, 2, 2)
    # scale 0: (3-1)/2 + (1-0)/0.5 = 3; scale 1: 10/5 + (4-2)/1 = 4; average 3.5
    assert torch.allclose(both, torch.tensor(3.5))
    assert torch.allclose(combine_scales(e, v, stats, "error"), torch.tensor((1.0 + 2.0) / 2))
    assert torch.allclose(combine_scales(e, v, stats, "variance"), torch.tensor((2.0 + 2.0) / 2))
    assert math.isclose(combine_scales(e[:1], v[:1], stats[:1]).mean().item(), 3.0)
    with pytest.raises(ValueError):
        combine_scales(e, v, stats, "sum")


def test_compactness_over_patches_hand_case():
    # Three patches of d = 3: each standardised over its own values (unbiased std) is (-1, 0, 1),
    # (1, 0, -1), (-1, 0, 1); correlations z_i . z_j / (d - 1): c12 = -1, c13 = 1, c23 = -1.
    patches = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 4.0, 6.0]])
    assert compactness_loss(patches, over="patches").item() == pytest.approx(3.0, abs=1e-6)  # upper triangle squared
    assert compactness_loss(patches, form="signed", over="patches").item() == pytest.approx(-2.0, abs=1e-6)
    # the same numbers read as 3 samples of 3 dimensions give the d x d matrix instead
    assert compactness_loss(patches).item() != pytest.approx(3.0, abs=1e-3)
    with pytest.raises(ValueError, match="compactness_over"):
        compactness_loss(patches, over="pixels")


def test_compactness_over_patches_equals_the_public_reimplementations():
    def reimplementation(output):  # LuyaooChen teacher_train.py / denguir src/utils.py compactness_loss
        _, n = output.size()
        avg = torch.mean(output, axis=1)
        std = torch.std(output, axis=1)
        zt = output.T - avg
        zt /= std
        corr = torch.matmul(zt.T, zt) / (n - 1)
        return torch.sum(torch.triu(corr, diagonal=1) ** 2)

    torch.manual_seed(0)
    descriptors = torch.randn(16, 8, dtype=torch.float64)
    assert torch.allclose(compactness_loss(descriptors, over="patches"), reimplementation(descriptors), rtol=1e-12)
