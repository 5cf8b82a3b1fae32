"""The RD4AD authors' PRO (hq-deng/RD4AD ``test.py``): NOT the MVTec AD evaluation's AUPRO.

The RD4AD paper's PRO figures (e.g. the 93.9 mean on MVTec AD) come from the authors' ``evaluation``
in ``test.py``, which calls ``compute_pro(mask, amap)`` once per anomalous test image (label != 0,
batch size 1) and reports the mean of those per-image values. ``compute_pro`` itself, on the masks
and maps it is given (here: one image):

* thresholds ``np.arange(min, max, (max - min) / 200)`` over the maps' own range (float64; 200,
  or 201 when rounding adds a step); a pixel is predicted anomalous when ``score > th`` (strict);
* PRO(th) = mean over the connected regions of the mask (``skimage.measure.label``: 8-connectivity
  in 2-D) of (region pixels predicted anomalous) / (region area);
* FPR(th) = (normal pixels predicted anomalous) / (normal pixels);
* only the thresholds with FPR < 0.3 are kept, their FPR divided by the largest kept FPR (so the
  curve always spans [0, 1] whatever the largest FPR below 0.3 is), and PRO is integrated over it
  with the trapezoid rule (``sklearn.metrics.auc``).

How this differs from :func:`anomaly_kd.metrics.aupro` (the MVTec AD procedure): per image, then
averaged, instead of one curve over all regions and all normal pixels of the test set (normal
images contribute nothing here); 200 evenly spaced thresholds instead of every distinct score;
the FPR axis is rescaled by the largest FPR below 0.3 instead of integrating up to exactly 0.3 and
dividing by 0.3. The two numbers are not comparable; compare this one only with figures computed
the same way (the RD4AD paper's PRO and re-implementations that use its code).

Written from the authors' code, computed exactly as it does (same thresholds, same float64 steps,
``statistics.mean`` for the region mean, ``np.mean`` over images, ``np.trapezoid`` as in
``sklearn.metrics.auc``), but vectorised: per region, the pixels above each threshold are counted
with ``searchsorted`` in the region's sorted scores instead of re-thresholding the map 200 times.

Where the authors' code would stop or return NaN, this raises ``ValueError``: an image whose mask
is all anomalous (their ``set(masks.flatten()) == {0, 1}`` assertion), a constant map, fewer than
two thresholds below the FPR limit, or a largest kept FPR of 0. Images are selected by their mask
(at least one anomalous pixel) instead of their label: the same images on MVTec AD, except an
anomalous image whose defect vanished when the mask was resized, which the authors' code would
reject with its assertion.
"""

from __future__ import annotations

import statistics

import numpy as np
from scipy import ndimage

from ._inputs import as_images

NUM_THRESHOLDS = 200  # test.py: compute_pro(..., num_th=200)
FPR_LIMIT = 0.3  # test.py: df = df[df["fpr"] < 0.3]


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """``sklearn.metrics.auc(x, y)``: trapezoid rule, x monotonic in either direction."""
    if x.size < 2:
        raise ValueError(f"{x.size} threshold(s) with FPR below the limit: at least 2 are needed")
    dx = np.diff(x)
    direction = 1.0
    if np.any(dx < 0):
        if not np.all(dx <= 0):
            raise ValueError("FPR is not monotonic over the thresholds")
        direction = -1.0
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return float(direction * trapezoid(y, x))


def rd4ad_compute_pro(amap, mask, num_th: int = NUM_THRESHOLDS, fpr_limit: float = FPR_LIMIT) -> float:
    """``compute_pro`` of the RD4AD authors on one image: ``amap`` and bool ``mask`` ``[H, W]``."""
    amap = np.asarray(amap, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if amap.shape != mask.shape or amap.ndim != 2:
        raise ValueError(f"map {amap.shape} and mask {mask.shape} must be the same [H, W]")
    n_normal = int(mask.size - np.count_nonzero(mask))
    if n_normal == 0 or n_normal == mask.size:
        raise ValueError("the mask must hold both normal and anomalous pixels")
    min_th, max_th = amap.min(), amap.max()
    if not min_th < max_th:
        raise ValueError("the anomaly map is constant: no threshold to sweep")
    thresholds = np.arange(min_th, max_th, (max_th - min_th) / int(num_th))
    regions, n_regions = ndimage.label(mask, np.ones((3, 3), dtype=bool))
    order = np.argsort(regions[mask], kind="stable")
    region_scores = amap[mask][order]
    bounds = np.searchsorted(regions[mask][order], np.arange(1, n_regions + 2))
    fractions = []  # per region: fraction of its pixels > each threshold
    for r in range(n_regions):
        scores = np.sort(region_scores[bounds[r] : bounds[r + 1]])
        above = scores.size - np.searchsorted(scores, thresholds, side="right")
        fractions.append(above / scores.size)
    pro = np.array([statistics.mean(column) for column in zip(*(f.tolist() for f in fractions))])
    normal = np.sort(amap[~mask])
    fpr = (normal.size - np.searchsorted(normal, thresholds, side="right")) / n_normal
    kept = fpr < fpr_limit
    fpr, pro = fpr[kept], pro[kept]
    if fpr.size and not fpr.max() > 0:
        raise ValueError("no normal pixel is above any threshold with FPR below the limit: the curve is undefined")
    if fpr.size:
        fpr = fpr / fpr.max()
    return _trapezoid(pro, fpr)


def rd4ad_pro(maps, masks, num_th: int = NUM_THRESHOLDS, fpr_limit: float = FPR_LIMIT) -> float:
    """The RD4AD authors' PRO: the mean over anomalous images (mask not empty) of
    :func:`rd4ad_compute_pro` of each image alone (``test.py``: ``np.mean(aupro_list)``).

    ``maps``/``masks``: [N,H,W], [N,1,H,W] or per-image lists of different sizes. Raises
    ``ValueError`` without an anomalous image, or naming the image where the curve is undefined.
    """
    images = as_images(maps, masks)
    anomalous = images.anomalous_images()
    if anomalous.size == 0:
        raise ValueError("no anomalous pixels: the RD4AD PRO is undefined")
    values = []
    for i in anomalous:
        amap, mask = images.image(i)
        try:
            values.append(rd4ad_compute_pro(amap, mask, num_th, fpr_limit))
        except ValueError as error:
            raise ValueError(f"image {int(i)}: {error}") from None
    return float(np.mean(values))
