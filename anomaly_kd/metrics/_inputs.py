"""Conversion and validation of metric inputs (numpy arrays or torch tensors, never imported here).

Scores keep their floating dtype (float32 stays float32, so 65M-pixel maps are never copied to
float64; float16/bfloat16 become float32 exactly); integer and bool scores become float64. Scores
must be finite: NaN and +-inf raise ``ValueError`` (as in scikit-learn). Labels and masks must be
binary (bool, or numbers that are all 0 or 1) and become bool.

Pixel metrics take maps and masks either as arrays ``[N,H,W]`` / ``[N,1,H,W]`` or, for images of
different sizes (e.g. evaluation at each image's native resolution), as a list of per-image arrays
``[H_i,W_i]`` / ``[1,H_i,W_i]`` or a :class:`RaggedImages` (all pixels flat, image after image,
plus the per-image shapes: no copy). Internally both become :class:`Images`: flat pixels, flat
masks and the per-image shapes, so pooled metrics see the same pixels and per-image steps
(connected regions of AUPRO) see each image's own 2-D layout.
"""

from __future__ import annotations

import math
from typing import NamedTuple

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
    """Scores and binary labels of equal shape ([N,1,H,W] becomes [N,H,W]), both raveled.

    Per-image lists / :class:`RaggedImages` (pixel maps of images of different sizes) are accepted
    too: each image's map and mask must have the same shape."""
    if is_ragged(scores) or is_ragged(labels):
        images = as_images(scores, labels, score_name, label_name)
        return images.maps, images.masks
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


class RaggedImages:
    """Per-image 2-D arrays of possibly different sizes, stored flat (no per-image objects).

    ``flat`` holds all pixels, image after image (row-major); image ``i`` is
    ``flat[offsets[i]:offsets[i + 1]].reshape(shapes[i])``. Indexing and iteration give these views;
    ``np.asarray(r)`` gives ``flat`` (so pooled pixel statistics need no copy); ``size``, ``dtype``
    and ``sum()`` are those of ``flat``.
    """

    __slots__ = ("flat", "shapes", "offsets")

    def __init__(self, flat, shapes):
        self.flat = to_numpy(flat).reshape(-1)
        self.shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        if (self.shapes < 0).any():
            raise ValueError("image shapes must be non-negative")
        self.offsets = np.zeros(len(self.shapes) + 1, dtype=np.int64)
        np.cumsum(self.shapes.prod(axis=1), out=self.offsets[1:])
        if int(self.offsets[-1]) != self.flat.size:
            raise ValueError(f"{self.flat.size} values but the shapes hold {int(self.offsets[-1])} pixels")

    @classmethod
    def from_list(cls, arrays, name: str = "maps") -> "RaggedImages":
        """From per-image arrays ``[H_i,W_i]`` or ``[1,H_i,W_i]`` (numpy or torch); copies them."""
        parts = [to_numpy(a) for a in arrays]
        parts = [a[0] if a.ndim == 3 and a.shape[0] == 1 else a for a in parts]
        if any(a.ndim != 2 for a in parts):
            raise ValueError(f"{name} of a list must be per-image arrays [H,W] or [1,H,W]")
        shapes = np.array([a.shape for a in parts], dtype=np.int64).reshape(-1, 2)
        flat = np.concatenate([a.reshape(-1) for a in parts]) if parts else np.zeros(0)
        return cls(flat, shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> np.ndarray:
        i = range(len(self))[i]  # bounds check, negative indices
        return self.flat[self.offsets[i] : self.offsets[i + 1]].reshape(self.shapes[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        return self.flat if dtype is None else self.flat.astype(dtype, copy=False)

    @property
    def size(self) -> int:
        return self.flat.size

    @property
    def dtype(self):
        return self.flat.dtype

    def sum(self, *args, **kwargs):
        return self.flat.sum(*args, **kwargs)

    def __repr__(self) -> str:
        return f"RaggedImages({len(self)} images, {self.size} pixels, {self.dtype})"


def is_ragged(x) -> bool:
    """A :class:`RaggedImages`, or a list/tuple of per-image arrays (not nested Python lists)."""
    if isinstance(x, RaggedImages):
        return True
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all(hasattr(a, "shape") and len(a.shape) >= 2 for a in x)
    )


class Images(NamedTuple):
    """Maps and masks of a set of images, flat, with each image's extent (see the module doc)."""

    maps: np.ndarray  # finite floats, all pixels, image after image
    masks: np.ndarray  # bool, same length and order
    shapes: np.ndarray  # int64 [N, 2]
    offsets: np.ndarray  # int64 [N + 1]: image i is [offsets[i], offsets[i + 1])

    def image(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        part, shape = slice(self.offsets[i], self.offsets[i + 1]), self.shapes[i]
        return self.maps[part].reshape(shape), self.masks[part].reshape(shape)

    def anomalous_images(self) -> np.ndarray:
        """Indices of the images with at least one anomalous pixel."""
        sizes = np.diff(self.offsets)
        nonempty = np.flatnonzero(sizes > 0)
        if nonempty.size == 0:
            return nonempty
        any_ = np.logical_or.reduceat(self.masks, self.offsets[nonempty])
        return nonempty[any_]


def as_images(maps, masks, map_name: str = "maps", mask_name: str = "masks") -> Images:
    """Maps and masks as :class:`Images`: arrays [N,H,W] / [N,1,H,W] (raveled, no copy when
    contiguous) or per-image lists / :class:`RaggedImages` (image shapes must match pairwise)."""
    if not (is_ragged(maps) or is_ragged(masks)):
        m, g = as_maps(maps, masks)
        n, h, w = m.shape
        shapes = np.tile(np.array([h, w], dtype=np.int64), (n, 1))
        offsets = np.arange(n + 1, dtype=np.int64) * (h * w)
        return Images(m.reshape(-1), g.reshape(-1), shapes, offsets)
    rm = maps if isinstance(maps, RaggedImages) else RaggedImages.from_list(_as_list(maps, map_name), map_name)
    rg = masks if isinstance(masks, RaggedImages) else RaggedImages.from_list(_as_list(masks, mask_name), mask_name)
    if rm.shapes.shape != rg.shapes.shape or not np.array_equal(rm.shapes, rg.shapes):
        raise ValueError(f"{map_name} and {mask_name} must have the same number of images of the same shapes")
    return Images(as_scores(rm.flat, map_name), as_binary(rg.flat, mask_name), rm.shapes, rm.offsets)


def _as_list(x, name: str):
    if isinstance(x, (list, tuple)):
        return x
    a = _squeeze_channel(to_numpy(x))
    if a.ndim != 3:
        raise ValueError(f"{name} must be [N,H,W], [N,1,H,W] or a list of per-image arrays")
    return list(a)


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
