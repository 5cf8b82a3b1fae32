"""Plain reference for AUPRO: the MVTec AD evaluation procedure written out step by step.

Follows the official ``compute_pro`` + ``trapezoid``: label each mask's regions (8-connectivity),
give every normal pixel an FPR increment of 1 and every anomalous pixel a PRO increment of
1/size(region), sort all pixels by descending score (full argsort), take cumulative sums, keep
only the LAST pixel of every run of equal scores (ties collapse to one threshold), prepend (0,0)
and append (1,1), then integrate with the trapezoid rule up to ``fpr_limit`` (interpolating at
the limit when it is not a curve point) and divide by ``fpr_limit``. Deliberately slow and simple;
FPRs are float64 here (the official code rounds them to float32, a difference below 1e-7).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
from scipy import ndimage


def reference_pro_curve(maps: np.ndarray, masks: np.ndarray):
    maps, masks = np.asarray(maps), np.asarray(masks).astype(bool)
    fp_step = np.zeros(maps.shape, dtype=np.float64)
    pro_step = np.zeros(maps.shape, dtype=np.float64)
    n_normal = n_regions = 0
    for i in range(maps.shape[0]):
        regions, n = ndimage.label(masks[i], structure=np.ones((3, 3), dtype=int))
        n_regions += n
        normal = regions == 0
        n_normal += int(normal.sum())
        fp_step[i][normal] = 1.0
        for r in range(1, n + 1):
            region = regions == r
            pro_step[i][region] = 1.0 / region.sum()

    scores = maps.ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    fpr = np.cumsum(fp_step.ravel()[order]) / n_normal
    pro = np.cumsum(pro_step.ravel()[order]) / n_regions
    last_of_run = np.append(np.diff(scores) != 0, True)
    fpr = np.clip(fpr[last_of_run], None, 1.0)
    pro = np.clip(pro[last_of_run], None, 1.0)
    return np.concatenate([[0.0], fpr, [1.0]]), np.concatenate([[0.0], pro, [1.0]])


def reference_trapezoid(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    correction = 0.0
    if x_max not in x:
        ins = bisect_right(list(x), x_max)
        assert 0 < ins < len(x)
        y_at = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_at + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def reference_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    fpr, pro = reference_pro_curve(maps, masks)
    return reference_trapezoid(fpr, pro, fpr_limit) / fpr_limit
