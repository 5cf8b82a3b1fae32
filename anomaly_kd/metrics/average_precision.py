"""Average precision (area under the precision-recall curve, step-wise), image and pixel level.

Exactly ``sklearn.metrics.average_precision_score`` (the non-interpolated step-wise sum), ties
included: with the distinct scores ``t_1 < ... < t_K`` as thresholds (a sample is predicted
anomalous when ``score >= t``), ``TP_k`` and ``PP_k`` the true and all predicted positives at
``t_k`` and ``P`` the number of positives,

    AP = sum_k (R_k - R_{k+1}) * P_k,   P_k = TP_k / PP_k,  R_k = TP_k / P,  R_{K+1} = 0

(scikit-learn writes it ``-sum(diff(recall) * precision[:-1])`` over its curve in ascending
threshold order, ending at (recall 0, precision 1)). The arrays are built in the same order and
summed with the same ``np.sum``, so the result is the same float, not just close. Tied scores form
one threshold, i.e. one step (no interpolation inside a tie).
"""

from __future__ import annotations

import numpy as np

from ._inputs import as_pair


def _average_precision(values: np.ndarray, positive: np.ndarray, what: str) -> float:
    pos = np.sort(values[positive])
    if pos.size == 0:
        raise ValueError(f"no anomalous {what}: average precision is undefined")
    ordered = np.sort(values)
    keep = np.ones(ordered.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    thresholds = ordered[keep]  # distinct, ascending: scikit-learn's curve order
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    predicted = np.flatnonzero(keep)  # ordered.size - (first index of each threshold)
    predicted = ordered.size - predicted
    precision = np.concatenate([tp / predicted, [1.0]])
    recall = np.concatenate([tp / pos.size, [0.0]])
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def image_ap(scores, labels) -> float:
    """Image-level average precision of ``scores`` [N] against binary ``labels`` (1 = anomalous).

    Equals ``sklearn.metrics.average_precision_score(labels, scores)``. Raises ``ValueError``
    without an anomalous image (scikit-learn warns and returns 0 there) and for bad inputs.
    """
    s, y = as_pair(scores, labels)
    return _average_precision(s, y, "images")


def pixel_ap(maps, masks) -> float:
    """Pixel-level average precision of ``maps`` against ``masks``, all pixels pooled
    ([N,H,W], [N,1,H,W] or per-image lists of different sizes); equals
    ``average_precision_score(masks.ravel(), maps.ravel())``. Costs one sort of the maps."""
    s, y = as_pair(maps, masks, "maps", "masks")
    return _average_precision(s, y, "pixels")
