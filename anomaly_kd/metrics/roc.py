"""Exact ROC AUC (image and pixel level) and ROC curves, without argsort of the whole input.

AUROC is the Mann-Whitney statistic: the probability that an anomalous sample scores higher than a
normal one, ties counting one half,

    AUROC = sum_j (#normal < a_j + 0.5 * #normal == a_j) / (P * N)

over the P anomalous scores a_j and N normal ones. This is exactly the trapezoidal area under the
ROC curve with one point per distinct score, i.e. what ``sklearn.metrics.roc_auc_score`` returns.
With ``S`` = all scores sorted (one ``np.sort``, vectorised and fast), ``lt_j`` = the number of
scores in ``S`` below ``a_j`` (``searchsorted`` of the sorted, much fewer, anomalous scores) and
``eq_j`` = the number equal to it, twice the numerator is the integer

    sum_j (2 * lt_j + eq_j) - P**2

because the anomalous scores themselves contribute sum_j (2 * #anom < a_j + #anom == a_j) = P**2.
The sum is done in int64, so the only rounding is the final division. ``eq_j`` is found by
stepping over the (short) run of scores equal to ``a_j`` after ``lt_j``.
"""

from __future__ import annotations

import numpy as np

from ._inputs import as_pair, check_both_classes


def count_equal(ordered: np.ndarray, values: np.ndarray, first: np.ndarray, known=0) -> np.ndarray:
    """How often each of ``values`` occurs in the ascending ``ordered``.

    ``first`` is each value's left insertion point and ``known`` how many copies are known to be
    there. Runs of ties are short in float maps, so they are followed element by element for a few
    steps; the values still tied after that get a right-side ``searchsorted``.
    """
    end = first + known
    todo = np.arange(values.size)
    for _ in range(4):
        todo = todo[end[todo] < ordered.size]
        todo = todo[ordered[end[todo]] == values[todo]]
        end[todo] += 1
    end[todo] = np.searchsorted(ordered, values[todo], side="right")
    return end - first


def _auroc(values: np.ndarray, positive: np.ndarray, what: str) -> float:
    pos = values[positive]
    n_pos, n_neg = pos.size, values.size - pos.size
    check_both_classes(n_pos, n_neg, what)
    pos.sort()  # sorted queries make searchsorted cache-friendly
    ordered = np.sort(values)
    lt = np.searchsorted(ordered, pos, side="left")
    # copies of each positive score among the positives: the length of its run in `pos`
    run_start = np.flatnonzero(np.concatenate([[True], pos[1:] != pos[:-1]]))
    run_length = np.diff(np.append(run_start, n_pos))
    eq = count_equal(ordered, pos, lt, np.repeat(run_length, run_length))
    twice_u = 2 * int(lt.sum(dtype=np.int64)) + int(eq.sum(dtype=np.int64)) - n_pos * n_pos
    return twice_u / (2.0 * n_pos * n_neg)


def image_auroc(scores, labels) -> float:
    """Image-level ROC AUC of ``scores`` [N] against binary ``labels`` [N] (1 = anomalous).

    Equals ``sklearn.metrics.roc_auc_score(labels, scores)`` (ties count one half). Raises
    ``ValueError`` for mismatched shapes, NaN/inf scores, non-binary labels or a single class.
    """
    s, y = as_pair(scores, labels)
    return _auroc(s, y, "images")


def pixel_auroc(maps, masks) -> float:
    """Pixel-level ROC AUC of anomaly ``maps`` against binary ``masks`` over all pixels pooled.

    ``maps``/``masks``: [N,H,W] or [N,1,H,W], or lists of per-image arrays of different sizes
    (pixels are pooled either way). Same value as ``roc_auc_score(masks.ravel(),
    maps.ravel())``; costs one sort of the maps (a copy; the input is not modified).
    """
    s, y = as_pair(maps, masks, "maps", "masks")
    return _auroc(s, y, "pixels")


def thin(ordered: np.ndarray, max_points: int | None) -> np.ndarray:
    """About ``max_points`` evenly spaced elements of ``ordered``, its first and last included."""
    if max_points is None or ordered.size <= max_points:
        return ordered
    return ordered[np.linspace(0, ordered.size - 1, max(int(max_points), 2)).round().astype(np.int64)]


def distinct_descending(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of the ascending ``ordered``, in descending order."""
    keep = np.ones(ordered.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep][::-1]


def roc_curve(scores, labels, max_points: int | None = None):
    """ROC curve ``(fpr, tpr, thresholds)`` of scores against binary labels of the same shape.

    Works for image scores [N] and for pixel maps/masks ([N,H,W] or [N,1,H,W], pooled). One point
    per distinct score, a sample being predicted anomalous when ``score >= threshold``; the first
    point is (0, 0) with threshold ``+inf``. This equals ``sklearn.metrics.roc_curve(labels,
    scores, drop_intermediate=False)``. ``max_points`` thins the curve for plotting: only about
    that many thresholds, at evenly spaced ranks of the sorted scores, are kept (each kept point is
    exact; the area under the thinned curve may differ slightly from the AUROC).
    """
    s, y = as_pair(scores, labels)
    pos = np.sort(s[y])
    n_pos, n_neg = pos.size, s.size - pos.size
    check_both_classes(n_pos, n_neg, "samples")
    ordered = np.sort(s)
    thr = distinct_descending(thin(ordered, max_points))
    tp = n_pos - np.searchsorted(pos, thr, side="left")
    fp = (s.size - np.searchsorted(ordered, thr, side="left")) - tp
    fpr = np.concatenate([[0.0], fp / n_neg])
    tpr = np.concatenate([[0.0], tp / n_pos])
    return fpr, tpr, np.concatenate([[np.inf], thr.astype(np.float64)])
