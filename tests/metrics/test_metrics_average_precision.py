"""Image/pixel average precision against scikit-learn's average_precision_score, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from anomaly_kd.metrics import image_ap, pixel_ap
from tests.metrics.test_metrics_auroc import _random_case  # the same score/label cases as AUROC's


@pytest.mark.parametrize("seed", range(40))
def test_image_ap_equals_sklearn_exactly(seed):
    rng = np.random.default_rng(seed)
    scores, labels = _random_case(rng, int(rng.integers(2, 300)))
    assert image_ap(scores, labels) == average_precision_score(labels, scores)


@pytest.mark.parametrize(
    "scores, labels, expected",
    [
        # ranked 0.9 (+), 0.8 (-), 0.7 (+): steps 1/2 * 1 + 1/2 * 2/3
        ([0.9, 0.8, 0.7], [1, 0, 1], 0.5 + 1 / 3),
        # one tie of a positive and a negative at the top: a single step, precision 1/2
        ([0.5, 0.5, 0.1], [1, 0, 0], 0.5),
        # all tied: one step at precision = prevalence
        ([1.0, 1.0, 1.0, 1.0], [1, 0, 0, 0], 0.25),
        ([0.1, 0.2], [1, 1], 1.0),  # positives only
    ],
)
def test_image_ap_hand_cases(scores, labels, expected):
    assert image_ap(scores, labels) == pytest.approx(expected, abs=1e-15)
    assert image_ap(scores, labels) == average_precision_score(labels, scores)


def test_pixel_ap_pools_pixels_and_accepts_ragged_images():
    rng = np.random.default_rng(3)
    maps = np.round(rng.standard_normal((4, 1, 9, 7)) * 3).astype(np.float32)
    masks = rng.random(maps.shape) < 0.2
    expected = average_precision_score(masks.ravel(), maps.ravel())
    assert pixel_ap(maps, masks) == expected
    assert pixel_ap(torch.from_numpy(maps), torch.from_numpy(masks)) == expected
    ragged_maps = [maps[0, 0], maps[1, 0, :5]]
    ragged_masks = [masks[0, 0], masks[1, 0, :5]]
    pooled = average_precision_score(np.concatenate([m.ravel() for m in ragged_masks]),
                                     np.concatenate([m.ravel() for m in ragged_maps]))
    assert pixel_ap(ragged_maps, ragged_masks) == pooled


def test_ap_without_anomalies_raises():
    with pytest.raises(ValueError, match="no anomalous images"):
        image_ap([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="no anomalous pixels"):
        pixel_ap(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), bool))
