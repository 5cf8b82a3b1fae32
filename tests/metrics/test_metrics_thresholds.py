"""Dice, image F1 and the thresholds, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from anomaly_kd.metrics import dice, f1_optimal_threshold, image_f1, quantile_threshold

# image 0: one anomalous pixel (0.9); image 1: normal, with one high pixel (0.7)
MAPS = np.array([[[0.9, 0.2], [0.6, 0.1]], [[0.7, 0.0], [0.0, 0.0]]])
MASKS = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (0.5, 0.5),  # P = {0.9, 0.6, 0.7}, G = {0.9}: 2 * 1 / (3 + 1); the normal image's 0.7 counts
        (0.6, 0.5),  # >= : 0.6 is predicted
        (0.8, 1.0),  # P = G = {0.9}
        (0.95, 0.0),  # P empty, G not
    ],
)
def test_dice(threshold, expected):
    assert dice(MAPS, MASKS, threshold) == pytest.approx(expected)
    assert dice(MAPS[:, None], MASKS[:, None].astype(np.uint8), threshold) == pytest.approx(expected)


def test_dice_empty_prediction_and_ground_truth_is_one():
    assert dice(MAPS, np.zeros_like(MASKS), 5.0) == 1.0
    assert dice(MAPS, np.zeros_like(MASKS), 0.8) == 0.0  # false positives only


def test_dice_compares_float32_maps_with_the_exact_threshold():
    maps = np.array([[[0.1, 0.2]]], dtype=np.float32)
    masks = np.array([[[0, 1]]], dtype=bool)
    # np.float32(0.2) is 0.20000000298...; 0.2000000035 rounds to it in float32 but is above it
    assert dice(maps, masks, 0.2) == 1.0
    assert dice(maps, masks, 0.2000000035) == 0.0


def test_f1_optimal_threshold():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    # threshold 0.8: tp 1 fp 0 -> F1 2/3; 0.4: tp 1 fp 1 -> 1/2; 0.35: tp 2 fp 1 -> 4/5; 0.1: 2/3
    assert f1_optimal_threshold(scores, labels) == 0.35
    assert image_f1(scores, labels, 0.35) == pytest.approx(0.8)
    assert image_f1(scores, labels, 0.35) == pytest.approx(f1_score(labels, np.array(scores) >= 0.35))


def test_f1_optimal_threshold_ties_pick_the_smallest():
    # threshold 0.4: tp 1 fp 0 -> 2/3; 0.3: 1/2; 0.2: 2/5; 0.1: tp 2 fp 2 -> 2/3 (tie with 0.4)
    assert f1_optimal_threshold([0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1]) == 0.1


@pytest.mark.parametrize("seed", range(10))
def test_f1_optimal_threshold_is_the_best_over_all_scores(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.standard_normal(60), 1)
    labels = rng.random(60) < 0.4
    labels[0] = True
    best = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    threshold = f1_optimal_threshold(scores, labels)
    assert image_f1(scores, labels, threshold) == pytest.approx(best, abs=1e-12)


def test_f1_errors():
    with pytest.raises(ValueError, match="no anomalous"):
        f1_optimal_threshold([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="no anomalous"):
        image_f1([0.1, 0.2], [0, 0], 0.1)
    assert f1_optimal_threshold([0.1, 0.2], [1, 1]) == 0.1  # no normal image is fine


def test_quantile_threshold():
    values = np.arange(101, dtype=np.float32).reshape(1, 101)
    assert quantile_threshold(values, 0.99) == pytest.approx(99.0)
    assert quantile_threshold(values, 0.5) == 50.0
    with pytest.raises(ValueError, match="q must"):
        quantile_threshold(values, 1.5)
    with pytest.raises(ValueError, match="NaN"):
        quantile_threshold([0.0, np.nan], 0.5)
