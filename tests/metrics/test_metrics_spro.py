"""sPRO (MVTec LOCO): exact against hand-computed cases and a plain-loop reference."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly_kd.metrics.spro import auspro, saturation_area, spro_curve


def reference_auspro(good_maps, regions, saturation, limit):
    """Plain loops: every distinct score a threshold, curve from (0, 0), trapezoid cut at the limit."""
    normals = [float(v) for m in good_maps for v in np.ravel(m)]
    pixels = [[float(v) for v in np.ravel(r)] for r in regions]
    thresholds = sorted(set(normals) | {v for r in pixels for v in r}, reverse=True)
    points = [(0.0, 0.0)]
    for t in thresholds:
        fpr = sum(v >= t for v in normals) / len(normals)
        spro = sum(min(1.0, sum(v >= t for v in r) / s) for r, s in zip(pixels, saturation)) / len(pixels)
        points.append((fpr, spro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def test_hand_cases():
    good = [np.array([0.1, 0.2, 0.3, 0.4])]
    # saturated by its first pixel: sPRO = 1 from FPR 0 on
    assert auspro(good, [np.array([0.5, 0.35])], [1.0], fpr_limit=0.25) == 1.0
    # saturation 2: (0,0) (0,.5) (.25,.5) (.25,1) (.5,1): area .25*.5 + .25*1 = .375 over .5
    assert auspro(good, [np.array([0.5, 0.35])], [2.0], fpr_limit=0.5) == 0.75
    # limit inside the segment (.5,1)->(.75,1) after .25*.5 + .25*1 + .125*1 = .5 over .625
    assert auspro(good, [np.array([0.5, 0.35])], [2.0], fpr_limit=0.625) == 0.8
    fpr, spro = spro_curve(good, [np.array([0.5, 0.35])], [2.0])
    assert fpr.tolist() == [0.0, 0.0, 0.25, 0.25, 0.5, 0.75, 1.0]
    assert spro.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    # a region scored below every normal pixel: (0,0) (.25,0) ... (1,0) (1,1), nothing below the limit
    assert auspro(good, [np.array([0.05])], [1.0], fpr_limit=0.3) == 0.0


def test_saturation_area_rules():
    assert saturation_area(400, 0.5, relative=True) == 200.0
    assert saturation_area(400, 150, relative=False) == 150.0
    assert saturation_area(100, 150, relative=False) == 100.0  # never more than the region


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_plain_loop_reference(seed):
    rng = np.random.default_rng(seed)
    levels = 7 if seed % 2 else 1000  # few levels: many ties between normal and defect pixels
    good = [rng.integers(0, levels, (5, 6)) / levels for _ in range(2)]
    regions = [rng.integers(0, levels, int(rng.integers(1, 12))) / levels + 0.2 for _ in range(4)]
    saturation = [float(rng.uniform(0.5, 8)) for _ in regions]
    for limit in (0.05, 0.3, 1.0):
        assert auspro(good, regions, saturation, limit) == pytest.approx(
            reference_auspro(good, regions, saturation, limit), abs=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="defect-free pixels"):
        auspro([], [np.array([1.0])], [1.0])
    with pytest.raises(ValueError, match="2 regions but 1 saturation"):
        auspro([np.zeros(3)], [np.ones(2), np.ones(1)], [1.0])
    with pytest.raises(ValueError, match="positive saturation"):
        auspro([np.zeros(3)], [np.ones(2)], [0.0])
