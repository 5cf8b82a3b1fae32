"""Conversion and validation of metric inputs (numpy arrays or torch tensors, never imported here).

Scores keep their floating dtype (float32 stays float32, so 65M-pixel maps are never copied to
float64; float16/bfloat16 become float32 exactly); integer and bool scores become float64. Scores
must be finite: NaN and +-inf raise ``ValueError`` (as in scikit-learn). Labels and masks must be
binary (bool, or numbers that are all 0 or 1) and become bool.
"""

from __future__ import annotations

import math

import numpy as np


def to_numpy(x) -> np.ndarray:
    """A numpy view of ``x``; torch tensors are detached and moved to the CPU (duck-typed)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def as_scores(x, name: str = "scores") -> np.ndarray:
    """Finite floating array (dtype kept when float32/float64)."""
    a = to_numpy(x)
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype.kind in "biu":
        a = a.astype(np.float64)
    elif a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    # min/max instead of isfinite(a).all(): no temporary array, and NaN propagates through both.
    if not (math.isfinite(a.min()) and math.isfinite(a.max())):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def as_binary(x, name: str = "labels") -> np.ndarray:
    """Bool array; numeric input must contain only 0 and 1."""
    a = to_numpy(x)
    if a.dtype == bool:
        return a
    b = a.astype(bool)
    if a.dtype.kind not in "biuf" or not np.array_equal(a, b):
        raise ValueError(f"{name} must be binary (bool or 0/1 values)")
    return b


def _squeeze_channel(a: np.ndarray) -> np.ndarray:
    return a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a


def as_pair(scores, labels, score_name: str = "scores", label_name: str = "labels"):
    """Scores and binary labels of equal shape ([N,1,H,W] becomes [N,H,W]), both raveled."""
    s = _squeeze_channel(as_scores(scores, score_name))
    y = _squeeze_channel(as_binary(labels, label_name))
    if s.shape != y.shape:
        raise ValueError(f"{score_name} shape {s.shape} does not match {label_name} shape {y.shape}")
    return s.reshape(-1), y.reshape(-1)


def as_maps(maps, masks):
    """Anomaly maps and bool masks, both [N,H,W] (a channel dimension of 1 is dropped)."""
    m = _squeeze_channel(as_scores(maps, "maps"))
    g = _squeeze_channel(as_binary(masks, "masks"))
    if m.ndim != 3 or m.shape != g.shape:
        raise ValueError(f"maps {m.shape} and masks {g.shape} must have the same shape [N,H,W] or [N,1,H,W]")
    return m, g


def check_both_classes(n_pos: int, n_neg: int, what: str) -> None:
    if n_pos == 0:
        raise ValueError(f"no anomalous {what}: the metric is undefined")
    if n_neg == 0:
        raise ValueError(f"no normal {what}: the metric is undefined")


def check_fpr_limit(fpr_limit) -> float:
    limit = float(fpr_limit)
    if not 0.0 < limit <= 1.0:  # also rejects NaN
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    return limit
