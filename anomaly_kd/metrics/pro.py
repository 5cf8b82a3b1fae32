"""AUPRO: area under the per-region-overlap curve, exactly as in the MVTec AD evaluation code.

The official procedure (``compute_pro`` + ``trapezoid`` of the MVTec AD evaluation scripts):

* each ground-truth mask is split into connected regions with 8-connectivity;
* every distinct score ``t`` of all pixels of all images is a threshold, a pixel being predicted
  anomalous when ``score >= t``;
* FPR(t) = fraction of ALL normal pixels (normal images included) predicted anomalous;
  PRO(t) = mean over ALL regions of the fraction of the region predicted anomalous;
* the curve (0,0), (FPR(t), PRO(t)) for t descending, (1,1) is integrated with the trapezoid rule
  up to ``fpr_limit`` (interpolating linearly at the limit) and divided by ``fpr_limit``.

The official code argsorts all pixels; here only what can move the curve below the limit is
ordered. With N normal pixels and P anomalous pixels of region weight
``w_j = 1 / (size of j's region * number of regions)`` (so PRO(t) = sum of w_j over a_j >= t):

1. ``K = min(floor(fpr_limit * N) + 1, N)`` and ``c`` = the K-th largest normal score: every
   threshold above ``c`` has FPR <= fpr_limit and ``c`` is the first threshold past the limit (or
   the last normal one, FPR = 1). Normal pixels below ``c`` do not matter. A strided sample of the
   maps gives a bound a little below ``c``, checked by an exact count (and lowered if needed); the
   normal scores above the bound are gathered chunk by chunk (``np.compress``) and sorted -- about
   ``fpr_limit * N`` values, so ~30% of the maps at the default limit. The P anomalous scores are
   sorted with their weights (an argsort of the few anomalous pixels only).
2. Between two thresholds the curve moves right only through normal pixels and up only through
   anomalous ones, so the area of the part above ``c`` is a weighted Mann-Whitney sum: each normal
   pixel with score s > c adds a strip of width 1/N and height (PRO(>s) + PRO(>=s)) / 2, i.e.

       area_above = sum over a_j > c of w_j * (#normal in (c, a_j) + 0.5 * #normal == a_j) / N

   with the counts from ``searchsorted`` of the sorted anomalous scores in the sorted normals.
3. The segment through threshold ``c``, from (#normal > c, PRO(>c)) to (#normal >= c, PRO(>=c))
   -- a diagonal when normal and anomalous pixels tie at ``c`` -- is cut at ``fpr_limit`` by
   linear interpolation, exactly like the official ``trapezoid``.

Regions are labelled per image inside the bounding box of its mask (``scipy.ndimage.label`` with a
3x3 structure of ones); images may have different sizes (a list of per-image maps, see
``_inputs``), regions never cross images. Nothing is converted to float64 or argsorted at full size: beyond the
inputs, memory is the sorted normal scores above the cut plus a few arrays per anomalous pixel.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ._inputs import Images, as_images, check_both_classes, check_fpr_limit
from .roc import count_equal, thin

_CHUNK = 1 << 22  # pixels per step when scanning all maps: temporaries stay at a few MB
_SAMPLE = 1 << 20  # about this many pixels (a strided sample) estimate the cut-off


class _Cut(NamedTuple):
    normals: np.ndarray  # ascending: every normal score >= some bound <= c (>= K of them)
    anom: np.ndarray  # every anomalous score, ascending
    weights: np.ndarray  # their PRO weights 1 / (region size * number of regions), float64
    n_normal: int  # all normal pixels
    i_above: int  # normals[i_above:] > c
    i_at: int  # normals[i_at:] >= c
    j_above: int  # anom[j_above:] > c
    j_at: int  # anom[j_at:] >= c


def _anomalous_pixels(images: Images):
    """Scores of the anomalous pixels (ascending) and their PRO weights, in the same order."""
    structure = np.ones((3, 3), dtype=bool)
    scores, ids, n_regions = [], [], 0
    for i in images.anomalous_images():
        amap, mask = images.image(i)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the mask's bounding box
        inside = mask[box]
        regions, n = ndimage.label(inside, structure)
        ids.append(regions[inside] + (n_regions - 1))
        scores.append(amap[box][inside])
        n_regions += n
    if not scores:
        return images.maps[:0], np.zeros(0)
    scores, ids = np.concatenate(scores), np.concatenate(ids)
    order = np.argsort(scores)
    weights = (1.0 / (np.bincount(ids) * float(n_regions)))[ids[order]]
    return scores[order], weights


def _chunks(flat: np.ndarray):
    for start in range(0, flat.size, _CHUNK):
        yield slice(start, start + _CHUNK)


def _top_normals(flat: np.ndarray, anomalous: np.ndarray, anom: np.ndarray, k: int) -> np.ndarray:
    """Every normal score >= some bound, sorted, the bound being low enough to keep >= k of them.

    The bound comes from a strided sample with a safety margin and is checked by an exact count
    (all pixels >= bound minus the anomalous ones); if too few normals pass, a lower bound is
    tried, and at last -inf (all normal pixels). Chunked scans keep temporaries at a few MB.
    """
    step = max(1, flat.size // _SAMPLE)
    sample = np.sort(flat[::step][~anomalous[::step]])
    fraction = k / (flat.size - anom.size)
    bounds = [
        sample[int((1.0 - fraction - margin) * sample.size)]
        for margin in (0.005, 0.05)
        if fraction + margin < 1.0 and sample.size
    ]
    keep = np.empty(min(_CHUNK, flat.size), dtype=bool)
    for bound in [*bounds, -np.inf]:
        count = -(anom.size - int(np.searchsorted(anom, bound, "left")))
        for part in _chunks(flat):
            values = flat[part]
            count += int(np.count_nonzero(np.greater_equal(values, bound, out=keep[: values.size])))
        if count >= k:
            break
    top = np.empty(count, dtype=flat.dtype)
    normal = np.empty_like(keep)
    end = 0
    for part in _chunks(flat):
        values = flat[part]
        selected, normal_part = keep[: values.size], normal[: values.size]
        np.greater_equal(values, bound, out=selected)
        np.logical_and(selected, np.logical_not(anomalous[part], out=normal_part), out=selected)
        n = int(np.count_nonzero(selected))
        np.compress(selected, values, out=top[end : end + n])
        end += n
    top.sort()
    return top


def _cut(maps, masks, limit: float) -> _Cut:
    images = as_images(maps, masks)
    anom, weights = _anomalous_pixels(images)
    n_normal = images.maps.size - anom.size
    check_both_classes(anom.size, n_normal, "pixels")
    k = min(floor(Fraction(limit) * n_normal) + 1, n_normal)  # exact: no float rounding of k
    normals = _top_normals(images.maps, images.masks, anom, k)
    c = normals[normals.size - k]
    return _Cut(
        normals,
        anom,
        weights,
        n_normal,
        int(np.searchsorted(normals, c, "right")),
        int(np.searchsorted(normals, c, "left")),
        int(np.searchsorted(anom, c, "right")),
        int(np.searchsorted(anom, c, "left")),
    )


def aupro(maps, masks, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD's AU-PRO), in [0, 1].

    ``maps``: anomaly maps [N,H,W] or [N,1,H,W] (finite floats; any range), or a list of per-image
    maps [H_i,W_i] of different sizes (or a :class:`RaggedImages`); ``masks``: binary ground truth
    of the same shape(s). Regions are 8-connected; images without anomalous pixels take
    part through their normal pixels. Matches the official MVTec evaluation to float rounding.
    Raises ``ValueError`` for mismatched shapes, NaN/inf maps, non-binary masks, no normal or no
    anomalous pixel, or ``fpr_limit`` outside (0, 1].
    """
    limit = check_fpr_limit(fpr_limit)
    cut = _cut(maps, masks, limit)
    normals, n = cut.normals, cut.n_normal
    above, w_above = cut.anom[cut.j_above :], cut.weights[cut.j_above :]
    # 2 * #normal in (c, a) + #normal == a, for every anomalous score a > c
    below = np.searchsorted(normals, above, "left")
    twice = 2 * (below - cut.i_above) + count_equal(normals, above, below)
    area = float(np.dot(w_above, twice)) / (2.0 * n)
    # the segment through threshold c, from (x0, y0) to (x1, y1), cut at the limit
    y0 = float(w_above.sum())
    y1 = y0 + float(cut.weights[cut.j_at : cut.j_above].sum())
    x0, x1 = (normals.size - cut.i_above) / n, (normals.size - cut.i_at) / n
    dx = min(limit, x1) - x0
    area += dx * (y0 + 0.5 * (y1 - y0) * dx / (x1 - x0))
    return min(max(area / limit, 0.0), 1.0)


def pro_curve(maps, masks, fpr_limit: float = 1.0, max_points: int | None = 10_000):
    """The PRO curve ``(fpr, pro)`` up to ``fpr_limit``, for plotting.

    Starts at (0, 0); one point per distinct score threshold with FPR <= ``fpr_limit``; ends with
    the point linearly interpolated at ``fpr_limit`` (and, for ``fpr_limit == 1``, at (1, 1) as in
    the official code), so ``np.trapezoid(pro, fpr) / fpr_limit == aupro(...)`` without thinning.
    ``max_points`` (default 10,000; ``None`` = every threshold) thins the thresholds to about that
    many: half at evenly spaced ranks of the normal scores, half of the anomalous ones. Each point
    kept is exact; the area of a thinned curve may differ slightly from ``aupro``. Same inputs and
    errors as :func:`aupro`.
    """
    limit = check_fpr_limit(fpr_limit)
    cut = _cut(maps, masks, limit)
    normals, anom, n = cut.normals, cut.anom, cut.n_normal
    half = None if max_points is None else max(int(max_points) // 2, 2)
    thr = np.union1d(thin(normals[cut.i_above :], half), thin(anom[cut.j_above :], half))[::-1]
    cum = np.concatenate([[0.0], np.cumsum(cut.weights)])
    fpr = np.concatenate([[0.0], (normals.size - np.searchsorted(normals, thr, "left")) / n])
    pro = np.concatenate([[0.0], cum[-1] - cum[np.searchsorted(anom, thr, "left")]])
    x1, y1 = (normals.size - cut.i_at) / n, cum[-1] - cum[cut.j_at]  # the threshold c
    if x1 > limit:
        y1 = pro[-1] + (y1 - pro[-1]) * (limit - fpr[-1]) / (x1 - fpr[-1])
        x1 = limit
    fpr, pro = np.append(fpr, x1), np.append(pro, y1)
    if limit == 1.0:
        fpr, pro = np.append(fpr, 1.0), np.append(pro, 1.0)
    return fpr, np.minimum(pro, 1.0)
