"""AUPRO and the PRO curve: hand-computed cases, the plain MVTec-style reference, properties."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from anomaly_kd.metrics import aupro, pro_curve
from anomaly_kd.metrics import pro as pro_module

_spec = importlib.util.spec_from_file_location("reference_pro", Path(__file__).with_name("reference_pro.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def _check(maps, masks, limit, expected):
    """aupro, the reference and the area under pro_curve all give `expected`."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    assert aupro(maps, masks, limit) == pytest.approx(expected, abs=1e-12)
    assert reference.reference_aupro(maps, masks, limit) == pytest.approx(expected, abs=1e-12)
    fpr, pro = pro_curve(maps, masks, limit, max_points=None)
    assert np.trapezoid(pro, fpr) / limit == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize("limit, expected", [(1.0, 1 / 3), (0.3, 0.0), (0.8, 1 / 6)])
def test_one_region(limit, expected):
    # scores 0.5 0.1 0.4 | 0.3 0.2   (last two anomalous: one region of size 2; N = 3 normals)
    # thresholds: 0.5 -> (1/3, 0)  0.4 -> (2/3, 0)  0.3 -> (2/3, 1/2)  0.2 -> (2/3, 1)  0.1 -> (1, 1)
    # limit 1:   only [2/3, 1] at height 1 has area: 1/3
    # limit 0.3: the curve is still at 0:            0
    # limit 0.8: (0.8 - 2/3) * 1 = 2/15, / 0.8 =     1/6
    maps = [[[0.5, 0.1, 0.4, 0.3, 0.2]]]
    masks = [[[0, 0, 0, 1, 1]]]
    _check(maps, masks, limit, expected)


TWO_REGIONS_MAPS = [[[0.9, 0.8, 0.1], [0.7, 0.2, 0.3], [0.6, 0.5, 0.4]]]
TWO_REGIONS_MASKS = [[[1, 0, 0], [1, 0, 0], [0, 0, 1]]]  # A = {0.9, 0.7} (size 2), B = {0.4}


@pytest.mark.parametrize("limit, expected", [(1.0, 17 / 24), (0.3, 13 / 36)])
def test_two_regions_of_different_sizes(limit, expected):
    # N = 6 normals (0.8 0.1 0.2 0.3 0.6 0.5); PRO = (overlap A + overlap B) / 2
    # 0.9 -> (0, 1/4)  0.8 -> (1/6, 1/4)  0.7 -> (1/6, 1/2)  0.6 -> (2/6, 1/2)  0.5 -> (3/6, 1/2)
    # 0.4 -> (3/6, 1)  0.3 -> (4/6, 1)  0.2 -> (5/6, 1)  0.1 -> (1, 1)
    # limit 1:   1/6 * 1/4 + 2/6 * 1/2 + 3/6 * 1 = 1/24 + 4/24 + 12/24 = 17/24
    # limit 0.3: 1/24 + (3/10 - 1/6) * 1/2 = 1/24 + 1/15 = 13/120, / 0.3 = 13/36
    _check(TWO_REGIONS_MAPS, TWO_REGIONS_MASKS, limit, expected)


@pytest.mark.parametrize("limit, expected", [(1.0, 13 / 30), (0.3, 0.25), (0.7, 11 / 42)])
def test_all_normal_image_in_the_set(limit, expected):
    # the two-region image plus a normal 3x3 image scoring 0.85 everywhere: N = 6 + 9 = 15 and
    # the 9 tied normals make one step 0.85 -> (9/15, 1/4), straddling the limits 0.3
    # 0.9 -> (0, 1/4)  0.85 -> (9/15, 1/4)  0.8 -> (10/15, 1/4)  0.7 -> (10/15, 1/2)
    # 0.6 -> (11/15, 1/2)  0.5 -> (12/15, 1/2)  0.4 -> (12/15, 1)  ...  0.1 -> (1, 1)
    # limit 1:   10/15 * 1/4 + 2/15 * 1/2 + 3/15 * 1 = 1/6 + 1/15 + 1/5 = 13/30
    # limit 0.3: flat at 1/4:                                               1/4
    # limit 0.7: 2/3 * 1/4 + (0.7 - 2/3) * 1/2 = 1/6 + 1/60 = 11/60, / 0.7 = 11/42
    maps = [*TWO_REGIONS_MAPS, [[0.85] * 3] * 3]
    masks = [*TWO_REGIONS_MASKS, [[0] * 3] * 3]
    _check(maps, masks, limit, expected)


@pytest.mark.parametrize("limit, expected", [(1.0, 0.875), (0.3, 0.65)])
def test_tie_between_normal_and_anomalous_is_one_diagonal_step(limit, expected):
    # scores 0.9 0.5 | 0.5 0.1, first two anomalous (one region), N = 2
    # 0.9 -> (0, 1/2)  0.5 -> (1/2, 1): both tied pixels enter at once, a diagonal segment
    # 0.1 -> (1, 1)
    # limit 1:   integral of (1/2 + x) over [0, 1/2] + 1/2 = 0.375 + 0.5 = 0.875
    # limit 0.3: integral of (1/2 + x) over [0, 0.3] = 0.15 + 0.045 = 0.195, / 0.3 = 0.65
    # (breaking the tie either way would give 1.0 / 0.5 at limit 0.3)
    _check([[[0.9, 0.5, 0.5, 0.1]]], [[[1, 1, 0, 0]]], limit, expected)


def test_diagonal_neighbours_form_one_region():
    # 0.9* 0.2* 0.5        * = anomalous; 0.2 and 0.8 touch diagonally: one region {0.9, 0.2, 0.8}
    # 0.4  0.3  0.8*       N = 3 normals (0.5 0.4 0.3)
    # 8-connectivity: 0.9 -> (0, 1/3)  0.8 -> (0, 2/3)  0.5 -> (1/3, 2/3) ... 0.3 -> (1, 2/3)
    #                 0.2 -> (1, 1): area 2/3
    # (4-connectivity would give regions {0.9, 0.2} and {0.8}: PRO 3/4 after 0.8, area 3/4)
    _check([[[0.9, 0.2, 0.5], [0.4, 0.3, 0.8]]], [[[1, 1, 0], [0, 0, 1]]], 1.0, 2 / 3)


def test_constant_maps():
    # one threshold: (0,0) -> (1,1), so the area up to L is L^2 / 2 and AUPRO = L / 2
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 1:3, 1:4] = True
    for limit in (1.0, 0.3, 0.01):
        _check(np.full(masks.shape, 7.0), masks, limit, limit / 2)


# ---------------------------------------------------------------- against the reference


def _random_maps(rng):
    n, h, w = int(rng.integers(1, 5)), int(rng.integers(1, 24)), int(rng.integers(1, 24))
    masks = ndimage.gaussian_filter(rng.standard_normal((n, h, w)), (0, 1.5, 1.5)) > rng.uniform(0, 0.4)
    masks[rng.random(n) < 0.3] = False  # images with empty masks
    masks.flat[0], masks.flat[-1] = True, False  # both classes
    maps = rng.standard_normal((n, h, w)) + masks * rng.uniform(0, 2)
    kind = rng.integers(5)
    if kind == 0:
        maps = np.round(maps * rng.integers(1, 4))  # heavy ties
    elif kind == 1:
        maps = maps * 1e30
    elif kind == 2:
        maps = -np.exp(maps) - 1e3  # negative
    elif kind == 3:
        maps = maps.astype(np.float32)
    return maps, masks


@pytest.mark.parametrize("seed", range(60))
def test_matches_reference(seed):
    rng = np.random.default_rng(seed)
    maps, masks = _random_maps(rng)
    for limit in (1.0, 0.3, 0.01, 0.001, float(rng.uniform(0.001, 1))):
        expected = reference.reference_aupro(maps, masks, limit)
        assert aupro(maps, masks, limit) == pytest.approx(expected, abs=1e-6)
        fpr, pro = pro_curve(maps, masks, limit, max_points=None)
        assert np.trapezoid(pro, fpr) / limit == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_matches_reference_when_the_sample_misses_the_cut(monkeypatch, seed):
    # a one-pixel "sample" makes the estimated cut-off wrong: the exact count must catch it
    monkeypatch.setattr(pro_module, "_SAMPLE", 1)
    monkeypatch.setattr(pro_module, "_CHUNK", 7)
    rng = np.random.default_rng(1000 + seed)
    maps, masks = _random_maps(rng)
    for limit in (1.0, 0.3, 0.05):
        assert aupro(maps, masks, limit) == pytest.approx(
            reference.reference_aupro(maps, masks, limit), abs=1e-6
        )


def test_larger_blobs_match_reference():
    rng = np.random.default_rng(7)
    masks = ndimage.gaussian_filter(rng.standard_normal((12, 64, 64)), (0, 4, 4)) > 0.05
    masks[::2] = False
    maps = (ndimage.gaussian_filter(rng.standard_normal(masks.shape), (0, 2, 2)) + masks).astype(np.float32)
    for limit in (0.3, 1.0):
        assert aupro(maps, masks, limit) == pytest.approx(
            reference.reference_aupro(maps, masks, limit), abs=1e-6
        )


def test_tensor_and_channel_inputs():
    rng = np.random.default_rng(3)
    maps, masks = _random_maps(rng)
    expected = aupro(maps, masks)
    assert aupro(torch.from_numpy(maps)[:, None], torch.from_numpy(masks)[:, None]) == pytest.approx(expected)
    assert aupro(maps, masks.astype(np.uint8)) == expected


def test_pro_curve_thinning_keeps_exact_points():
    rng = np.random.default_rng(5)
    masks = np.zeros((4, 32, 32), bool)
    masks[1, 5:15, 5:12] = masks[2, 20:30, 2:30] = True
    maps = rng.standard_normal(masks.shape) + masks
    fpr, pro = pro_curve(maps, masks, 1.0, max_points=None)
    fpr_t, pro_t = pro_curve(maps, masks, 1.0, max_points=20)
    assert len(fpr_t) <= 24
    points = set(zip(fpr.tolist(), pro.tolist(), strict=True))
    assert set(zip(fpr_t.tolist(), pro_t.tolist(), strict=True)) <= points
    assert (fpr_t[0], pro_t[0], fpr_t[-1], pro_t[-1]) == (0.0, 0.0, 1.0, 1.0)
    fpr_l, _ = pro_curve(maps, masks, 0.3, max_points=20)
    assert fpr_l[-1] == 0.3 and np.all(np.diff(fpr_l) >= 0)


# ---------------------------------------------------------------- properties

small_case = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda shape: st.tuples(
        arrays(np.int64, shape, elements=st.integers(-4, 4)),  # exact under the transforms below
        arrays(bool, shape, elements=st.booleans()),
    )
)
limits = st.sampled_from([1.0, 0.5, 0.3, 0.05])


@settings(max_examples=80, deadline=None)
@given(small_case, limits)
def test_properties(case, limit):
    maps, masks = case
    if masks.all() or not masks.any():
        return
    value = aupro(maps, masks, limit)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(reference.reference_aupro(maps, masks, limit), abs=1e-6)
    for transform in (np.exp, lambda x: x * 3 + 7, lambda x: x**3):
        assert aupro(transform(maps.astype(np.float64)), masks, limit) == pytest.approx(value, abs=1e-12)
    perfect = masks * 10.0 + maps  # every anomalous pixel above every normal one
    assert aupro(perfect, masks, limit) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("limit", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fpr_limit(limit):
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(*_random_maps(np.random.default_rng(0)), fpr_limit=limit)


def test_errors():
    maps = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="no anomalous"):
        aupro(maps, np.zeros(maps.shape, bool))
    with pytest.raises(ValueError, match="no normal"):
        aupro(maps, np.ones(maps.shape, bool))
    with pytest.raises(ValueError, match="shape"):
        aupro(maps, np.ones((2, 4, 5), bool))
    with pytest.raises(ValueError, match="shape"):
        aupro(maps[0], np.ones((4, 4), bool))  # a single 2-D map
    bad = maps.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        aupro(bad, maps > 0)
    with pytest.raises(ValueError, match="binary"):
        aupro(maps, np.full(maps.shape, 255, np.uint8))
