"""Image-score rules (anomaly_kd.models.components.image_score) against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.image_score import blur_sigma, rescore


def maps_and_scores():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 1, 40, 48, generator=g)
    maps[0, 0, 0, 0] = 5.0  # a one-pixel speck at the corner
    return maps, torch.tensor([7.0, 8.0, 9.0])


def test_model_rule_keeps_the_methods_scores_and_max_is_the_maximum():
    maps, scores = maps_and_scores()
    assert torch.equal(rescore(maps, scores, "model"), scores)
    assert torch.equal(rescore(maps, scores, "max"), maps.flatten(1).amax(1))


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_blur_rule_is_scipys_gaussian_filter_then_the_maximum(sigma):
    maps, scores = maps_and_scores()
    expected = [gaussian_filter(m[0].double().numpy(), sigma=sigma).max() for m in maps]
    got = rescore(maps, scores, f"blur{sigma:g}").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got[0] < 5.0  # the speck is spread over its neighbours


@pytest.mark.parametrize("rule", ["blur", "blur0", "blur-2", "blurx", "mean", ""])
def test_unknown_rules_are_one_clear_error(rule):
    with pytest.raises(UserError, match="image-score rule"):
        blur_sigma(rule)
