"""sPRO: the saturated per-region overlap of MVTec LOCO AD (Bergmann et al., IJCV 2022).

Each defect *region* is one ground-truth mask (LOCO: one mask file of an image; it may have several
connected components) with a saturation area ``s``. At a threshold ``t`` (a pixel is predicted
anomalous when ``score >= t``) a region with ``o(t)`` predicted pixels scores ``min(1, o(t) / s)``;
sPRO(t) is the mean over all regions. FPR(t) is the fraction of the defect-free pixels predicted
anomalous; as in the official evaluation (mvtec_loco_ad_evaluation ``metrics.py``), the caller
passes the defect-free pixels of every evaluated image: all pixels of the good images and, in a
defective image, those outside every defect. The curve (0, 0), (FPR(t), sPRO(t)) for every distinct
score ``t`` descending, is integrated with the trapezoid rule up to ``fpr_limit`` (linear
interpolation at the limit) and divided by ``fpr_limit`` (0.05 in the paper).

Exact computation: order a region's pixels by descending score; its k-th pixel raises the region's
score by ``(min(k, s) - min(k - 1, s)) / s``. Pixels of equal score always enter together, so
sPRO(t) is the sum of these increments over the pixels with score >= t (divided by the number of
regions), whatever the order among ties.

Saturation areas (:func:`saturation_area`): ``relative_saturation`` -> ``threshold * region area``,
else ``min(threshold, region area)`` (pixels).
"""

from __future__ import annotations

import numpy as np

from ._inputs import check_fpr_limit


def saturation_area(region_area: float, threshold: float, relative: bool) -> float:
    """A region's saturation area from its ``defects_config.json`` entry."""
    if relative:
        return float(threshold) * float(region_area)
    return float(min(float(threshold), float(region_area)))


def _check(good_maps, region_scores, saturation) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    normals = np.concatenate([np.asarray(m, dtype=np.float64).reshape(-1) for m in good_maps]) \
        if len(good_maps) else np.zeros(0)
    regions = [np.asarray(r, dtype=np.float64).reshape(-1) for r in region_scores]
    sat = np.asarray(saturation, dtype=np.float64).reshape(-1)
    if normals.size == 0:
        raise ValueError("sPRO needs defect-free pixels (they give the false positive rate)")
    if not regions:
        raise ValueError("sPRO needs at least one defect region")
    if sat.size != len(regions):
        raise ValueError(f"{len(regions)} regions but {sat.size} saturation areas")
    if any(r.size == 0 for r in regions) or not (sat > 0).all():
        raise ValueError("every defect region needs at least one pixel and a positive saturation area")
    if not np.isfinite(normals).all() or not all(np.isfinite(r).all() for r in regions):
        raise ValueError("anomaly maps must be finite (no NaN or inf)")
    return normals, regions, sat


def spro_curve(good_maps, region_scores, saturation) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, spro) at every distinct score, thresholds descending, starting at (0, 0).

    ``good_maps``: the scores of the defect-free pixels (arrays of any shapes: the maps of the good
    images and the pixels of defective images outside their defects); ``region_scores``: per
    region, the scores of its pixels; ``saturation``: per region, its saturation area (> 0).
    """
    normals, regions, sat = _check(good_maps, region_scores, saturation)
    scores, gains = [], []
    for r, s in zip(regions, sat):
        ordered = np.sort(r)[::-1]
        k = np.arange(1, ordered.size + 1, dtype=np.float64)
        scores.append(ordered)
        gains.append((np.minimum(k, s) - np.minimum(k - 1, s)) / s)
    anom, gain = np.concatenate(scores), np.concatenate(gains) / len(regions)
    thresholds = np.unique(np.concatenate([normals, anom]))[::-1]
    normals_sorted = np.sort(normals)
    order = np.argsort(anom, kind="stable")
    anom_sorted, cum = anom[order], np.concatenate([[0.0], np.cumsum(gain[order][::-1])])[::-1]
    # cum[i] = sum of the gains of anom_sorted[i:], i.e. of the pixels with score >= anom_sorted[i]
    fpr = (normals.size - np.searchsorted(normals_sorted, thresholds, "left")) / normals.size
    spro = cum[np.searchsorted(anom_sorted, thresholds, "left")]
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], np.minimum(spro, 1.0)])


def auspro(good_maps, region_scores, saturation, fpr_limit: float = 0.05) -> float:
    """Normalised area under the sPRO curve up to ``fpr_limit``, in [0, 1]. Same inputs as
    :func:`spro_curve`; ``ValueError`` without defect-free pixels or regions."""
    limit = check_fpr_limit(fpr_limit)
    fpr, spro = spro_curve(good_maps, region_scores, saturation)
    inside = int(np.searchsorted(fpr, limit, "right"))  # fpr is non-decreasing
    area = float(np.trapezoid(spro[:inside], fpr[:inside])) if inside > 1 else 0.0
    if inside < fpr.size:
        x0, y0, x1, y1 = fpr[inside - 1], spro[inside - 1], fpr[inside], spro[inside]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_limit) / 2.0
    return min(max(area / limit, 0.0), 1.0)
