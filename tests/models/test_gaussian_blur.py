"""The torch Gaussian blur against scipy.ndimage.gaussian_filter (RD4AD's smoothing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from anomaly_kd.models.components.gaussian import GaussianBlur2d, gaussian_kernel1d, symmetric_indices


@pytest.mark.parametrize(
    "shape,sigma,truncate",
    [((64, 64), 4.0, 4.0), ((256, 256), 4.0, 4.0), ((37, 20), 4.0, 4.0), ((10, 7), 4.0, 4.0),
     ((33, 40), 1.5, 4.0), ((50, 50), 2.0, 2.5)],
)  # fmt: skip
def test_matches_scipy_gaussian_filter(shape, sigma, truncate):
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 1, *shape, generator=generator, dtype=torch.float64) * 3  # RD maps are in [0, 6]
    ours = GaussianBlur2d(sigma, truncate)(maps.float()).double().numpy()
    for i in range(3):
        reference = gaussian_filter(maps[i, 0].numpy(), sigma=sigma, truncate=truncate)  # mode='reflect'
        assert np.abs(ours[i, 0] - reference).max() < 1e-5


def test_kernel_and_border_rule():
    kernel = gaussian_kernel1d(4.0)
    assert kernel.numel() == 33 and kernel.sum().item() == pytest.approx(1.0)  # radius int(4*4+0.5)
    # scipy 'reflect' (half-sample symmetric), also when the radius exceeds the size
    assert symmetric_indices(3, 2).tolist() == [1, 0, 0, 1, 2, 2, 1]
    assert symmetric_indices(2, 5).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]


def test_channels_are_blurred_independently_and_keep_their_dtype():
    maps = torch.zeros(1, 2, 20, 20)
    maps[0, 0, 10, 10] = 1.0
    out = GaussianBlur2d(2.0)(maps)
    assert out.dtype == maps.dtype and out.shape == maps.shape
    assert out[0, 1].abs().max() == 0 and out[0, 0].sum().item() == pytest.approx(1.0, abs=1e-6)
