"""The RD4AD authors' per-image PRO: hand cases, and the authors' code transcribed as a plain loop."""

from __future__ import annotations

from statistics import mean

import numpy as np
import pytest
from skimage import measure
from sklearn.metrics import auc

from anomaly_kd.metrics import aupro, rd4ad_pro
from anomaly_kd.metrics.pro_rd4ad import rd4ad_compute_pro


def _authors_compute_pro(masks, amaps, num_th=200):
    """hq-deng/RD4AD test.py compute_pro, step by step (pandas' DataFrame replaced by lists)."""
    rows = []
    binary_amaps = np.zeros_like(amaps, dtype=bool)
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / num_th
    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th] = 0
        binary_amaps[amaps > th] = 1
        pros = []
        for binary_amap, mask in zip(binary_amaps, masks):
            for region in measure.regionprops(measure.label(mask)):
                tp_pixels = binary_amap[region.coords[:, 0], region.coords[:, 1]].sum()
                pros.append(tp_pixels / region.area)
        inverse_masks = 1 - masks
        fpr = np.logical_and(inverse_masks, binary_amaps).sum() / inverse_masks.sum()
        rows.append((mean(pros), fpr))
    pro = np.array([r[0] for r in rows])
    fpr = np.array([r[1] for r in rows])
    keep = fpr < 0.3
    return auc(fpr[keep] / fpr[keep].max(), pro[keep])


def _authors_evaluation(maps, masks):
    """test.py evaluation(): compute_pro per anomalous image (batch 1), then np.mean."""
    return np.mean([_authors_compute_pro(m[None].astype(int), a[None].astype(np.float64))
                    for a, m in zip(maps, masks) if m.any()])


# One row of 10 pixels with scores 0..9: thresholds 0..8 with num_th=9 (delta exactly 1).
ROW = np.arange(10.0)[None]


def test_hand_case_two_regions():
    # Regions {5} and {8} (not adjacent); normals 0,1,2,3,4,6,7,9 (8 pixels). Score > th:
    # th=6: FPR 2/8 (7, 9), PRO mean(0, 1) = 1/2;  th=7: FPR 1/8, PRO 1/2;  th=8: FPR 1/8, PRO 0.
    # FPR < 0.3 keeps th = 6, 7, 8; divided by 2/8: x = 1, 1/2, 1/2; area = 1/2 * 1/2 = 1/4.
    mask = np.isin(np.arange(10), [5, 8])[None]
    assert rd4ad_compute_pro(ROW, mask, num_th=9) == 0.25
    assert rd4ad_pro(ROW[None], mask[None], num_th=9) == 0.25


def test_hand_case_mean_over_anomalous_images_only():
    # Second image: region {9}, normals 0..8: FPR at th=k is (8-k)/9, PRO 1 for every th:
    # th = 6, 7, 8 kept (2/9, 1/9, 0), x = 1, 1/2, 0, area 1. A normal image is not counted.
    masks = np.stack([np.isin(np.arange(10), [5, 8])[None], (np.arange(10) == 9)[None], np.zeros((1, 10), bool)])
    maps = np.stack([ROW, ROW, ROW[:, ::-1]])
    assert rd4ad_compute_pro(ROW, masks[1], num_th=9) == 1.0
    assert rd4ad_pro(maps, masks, num_th=9) == (0.25 + 1.0) / 2
    assert aupro(maps, masks) != rd4ad_pro(maps, masks, num_th=9)  # not the MVTec AUPRO


def test_region_mean_uses_8_connectivity():
    # Mask (0,0), (1,1), (1,2): one region of 3 pixels with 8-connectivity (two with 4). Only
    # (0,0) (score 9) is ever above a threshold (the others score 0.05, the minimum), so PRO = 1/3
    # at every threshold (4-connectivity would give mean(1, 0) = 1/2). Normals 0.1 .. 0.6: FPR <
    # 0.3 keeps the thresholds with at most one normal above, FPR 1/6 then 0, rescaled to 1 .. 0.
    mask = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], bool)
    amap = np.array([[9.0, 0.1, 0.2], [0.3, 0.05, 0.05], [0.4, 0.5, 0.6]])
    assert rd4ad_compute_pro(amap, mask) == pytest.approx(1 / 3, abs=1e-15)
    assert rd4ad_compute_pro(amap, mask) == _authors_compute_pro(mask[None].astype(int), amap[None])


@pytest.mark.parametrize("seed", range(12))
def test_equals_the_authors_code(seed):
    rng = np.random.default_rng(seed)
    n, size = 3, 12
    masks = np.zeros((n, size, size), bool)
    for i in range(n - 1):  # the last image is normal
        for _ in range(int(rng.integers(1, 3))):
            y, x = rng.integers(0, size - 3, 2)
            masks[i, y : y + int(rng.integers(1, 4)), x : x + int(rng.integers(1, 4))] = True
    maps = (rng.standard_normal(masks.shape) + 2.0 * masks).astype(np.float32)
    if seed % 3 == 0:
        maps = np.round(maps * 2) / 2  # ties
    assert rd4ad_pro(maps, masks) == _authors_evaluation(maps, masks)


def test_undefined_cases_raise():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        rd4ad_compute_pro(ROW[0:1], np.ones((1, 10), bool))
    with pytest.raises(ValueError, match="constant"):
        rd4ad_compute_pro(np.zeros((1, 10)), np.arange(10)[None] == 3)
    with pytest.raises(ValueError, match="no anomalous pixels"):
        rd4ad_pro(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), bool))
    with pytest.raises(ValueError, match="image 0"):  # a two-valued map: FPR 0 or 1, no curve
        rd4ad_pro((np.arange(10) == 3)[None, None].astype(float), (np.arange(10) == 3)[None, None])
