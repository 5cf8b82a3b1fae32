"""Thresholds and thresholded metrics (image F1, pixel Dice).

Convention everywhere: a sample or pixel is predicted anomalous when ``score >= threshold``
(as in ``sklearn.metrics.precision_recall_curve``), so a threshold equal to a score flags it.
"""

from __future__ import annotations

import numpy as np

from ._inputs import as_images, as_pair, as_scores


def _threshold(threshold) -> np.float64:
    """The threshold as float64, so that float32 scores are compared without rounding it."""
    t = np.float64(threshold)
    if np.isnan(t):
        raise ValueError("threshold is NaN")
    return t


def f1_optimal_threshold(scores, labels) -> float:
    """The score threshold maximising image-level F1 of ``scores >= threshold`` on these labels.

    Exact over every distinct score (like an argmax over ``precision_recall_curve``); when several
    thresholds give the same best F1, the smallest one is returned. It is chosen on the labels
    passed in (the TEST labels in the thesis protocol), so results using it are optimistic.
    Raises ``ValueError`` if there is no anomalous image (F1 undefined); normal images are optional.
    """
    s, y = as_pair(scores, labels)
    pos = np.sort(s[y])
    if pos.size == 0:
        raise ValueError("no anomalous images: the F1-optimal threshold is undefined")
    ordered = np.sort(s)
    thr = np.unique(ordered)
    tp = pos.size - np.searchsorted(pos, thr, side="left")
    predicted = s.size - np.searchsorted(ordered, thr, side="left")
    f1 = 2.0 * tp / (predicted + pos.size)  # equal fractions round equally: ties are exact
    return float(thr[int(np.argmax(f1))])


def image_f1(scores, labels, threshold: float) -> float:
    """Image-level F1 of ``scores >= threshold``; raises ``ValueError`` if there is no anomalous
    image (F1 would be 0/0 or 0 whatever the scores)."""
    s, y = as_pair(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("no anomalous images: F1 is undefined")
    predicted = s >= _threshold(threshold)
    tp = int(np.count_nonzero(predicted & y))
    return 2.0 * tp / (int(predicted.sum()) + n_pos)


def dice(maps, masks, threshold: float) -> float:
    """Pooled Dice 2|P & G| / (|P| + |G|) over ALL pixels of all images, P = ``maps >= threshold``.

    Pixels are pooled before the ratio (not a mean of per-image Dice), so images with an empty mask
    count only through their false-positive pixels; a normal image with no predicted pixel
    contributes nothing. If P and G are both empty over the whole set, the result is 1.0.
    ``maps``/``masks``: [N,H,W] or [N,1,H,W], or lists of per-image arrays of different sizes.
    """
    images = as_images(maps, masks)
    m, g = images.maps, images.masks
    predicted = m >= _threshold(threshold)
    n_pred, n_true = int(np.count_nonzero(predicted)), int(np.count_nonzero(g))
    if n_pred + n_true == 0:
        return 1.0
    np.logical_and(predicted, g, out=predicted)
    return 2.0 * int(np.count_nonzero(predicted)) / (n_pred + n_true)


def quantile_threshold(values, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) of finite ``values`` of any shape.

    Meant for validation normals: e.g. ``q=0.99`` of normal image scores or normal-pixel maps
    gives a threshold flagging about 1% of normal samples. Raises ``ValueError`` unless q in [0, 1].
    """
    if not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    return float(np.quantile(as_scores(values, "values").reshape(-1), float(q)))


def finite_or_none(value) -> float | None:
    """``value`` as a float (a number, numpy scalar or 0-d tensor), or None when it is missing,
    not a number, NaN or infinite: e.g. a threshold that validation never set."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None
