"""Accumulate an evaluation epoch batch by batch, then compute every metric once.

The state only keeps compact arrays on the CPU: image scores (float64), labels (bool) and, when the
dataset has masks, the anomaly maps as float32 (all pixels flat, image after image), the masks as
bits (``np.packbits``: 1/32 of the maps' memory) and each image's shape. Images may have different
sizes (evaluation at each image's native resolution): ``maps``/``masks`` are then
:class:`~anomaly_kd.metrics.RaggedImages` instead of ``[N,H,W]`` arrays. The maps and the masks
exist once: every metric reads the same arrays (the masks are unpacked once per
:meth:`~AnomalyMetricState.compute`).

Batches are stored as a list and concatenated lazily. For multi-process evaluation, gather
``state_arrays()`` of every process, rebuild states with ``from_arrays`` and ``merge`` them (and
``take`` to put the images back in data-set order): the result is the same as one state that saw
every batch.

Undefined metrics (e.g. AUROC when the test set has a single class, or pixel metrics without any
anomalous pixel) do not raise in :meth:`AnomalyMetricState.compute`: they are ``None`` and the
reason is added to ``result["notes"]``. The functional API raises ``ValueError`` instead.
"""

from __future__ import annotations

import time

import numpy as np

from ._inputs import RaggedImages, as_binary, as_images, as_scores, check_fpr_limit, to_numpy
from .average_precision import image_ap, pixel_ap
from .pro import aupro
from .pro_rd4ad import rd4ad_pro as rd4ad_pro_metric
from .roc import image_auroc, pixel_auroc
from .thresholds import dice, f1_optimal_threshold, image_f1

# per key: dtype of the stored parts; "maps" flat float32, "mask_bits" packed bits of the flat
# masks (one packbits per part), "shapes" int64 [n, 2] of the part's images.
_DTYPES = {"scores": np.float64, "labels": bool, "maps": np.float32, "mask_bits": np.uint8, "shapes": np.int64}
_KEYS = tuple(_DTYPES)
_PIXEL_KEYS = ("maps", "mask_bits", "shapes")


class AnomalyMetricState:
    """Scores, labels and (if ``has_masks``) maps and masks of an evaluation epoch."""

    def __init__(self, has_masks: bool, fpr_limit: float = 0.3):
        self.has_masks = bool(has_masks)
        self.fpr_limit = check_fpr_limit(fpr_limit)
        self._parts: dict[str, list[np.ndarray]] = {key: [] for key in _KEYS}

    def update(self, maps, scores, labels, masks=None) -> None:
        """Add a batch: ``maps`` [B,H,W] or [B,1,H,W] (or a list of B per-image maps [H_i,W_i] of
        any sizes), ``scores`` [B], ``labels`` [B] (1 = anomalous), ``masks`` like ``maps``.
        Without ``has_masks``, ``maps``/``masks`` are ignored. Everything is copied (tensors are
        detached and moved to the CPU); maps are kept as float32, masks as bits."""
        scores = as_scores(scores, "scores").reshape(-1).astype(np.float64)
        labels = np.array(as_binary(labels, "labels").reshape(-1))
        if scores.shape != labels.shape:
            raise ValueError(f"{scores.size} scores but {labels.size} labels in the batch")
        if self.has_masks:
            if maps is None or masks is None:
                raise ValueError("this state has_masks=True: update() needs maps and masks")
            images = as_images(maps, masks)
            if len(images.shapes) != scores.size:
                raise ValueError(f"{len(images.shapes)} maps but {scores.size} scores in the batch")
            self._parts["maps"].append(np.array(images.maps, dtype=np.float32))
            self._parts["mask_bits"].append(np.packbits(images.masks))
            self._parts["shapes"].append(np.array(images.shapes, dtype=np.int64))
        self._parts["scores"].append(scores)
        self._parts["labels"].append(labels)

    def _consolidate(self) -> None:
        """Concatenate the parts of every key into one (the bits of several parts are repacked)."""
        parts = self._parts
        if len(parts["mask_bits"]) > 1:
            counts = [int(np.prod(shapes, axis=1).sum()) for shapes in parts["shapes"]]
            bits = [np.unpackbits(b, count=c) for b, c in zip(parts["mask_bits"], counts)]
            parts["mask_bits"][:] = [np.packbits(np.concatenate(bits))]
        for key in _KEYS:
            if len(parts[key]) != 1:
                empty = np.zeros((0, 2) if key == "shapes" else 0, dtype=_DTYPES[key])
                parts[key][:] = [np.concatenate(parts[key]) if parts[key] else empty]

    def _joined(self, key: str) -> np.ndarray | None:
        if key in _PIXEL_KEYS and not self.has_masks:
            return None
        if any(len(part) != 1 for part in self._parts.values()):
            self._consolidate()
        return self._parts[key][0]

    def _images(self, flat: np.ndarray):
        """``flat`` pixels as [N,H,W] when all images share a shape, else RaggedImages."""
        shapes = self.shapes
        if len(shapes) == 0:
            return flat
        if (shapes == shapes[0]).all():
            return flat.reshape(len(shapes), *shapes[0])
        return RaggedImages(flat, shapes)

    @property
    def scores(self) -> np.ndarray:
        """Image scores [N], float64."""
        return self._joined("scores")

    @property
    def labels(self) -> np.ndarray:
        """Image labels [N], bool (True = anomalous)."""
        return self._joined("labels")

    @property
    def shapes(self) -> np.ndarray | None:
        """Each image's map/mask shape, int64 [N, 2]; None without masks."""
        return self._joined("shapes")

    @property
    def maps(self):
        """Anomaly maps, float32: [N,H,W] (a view of the stored pixels) when all images share a
        shape, else :class:`~anomaly_kd.metrics.RaggedImages`; None without masks."""
        flat = self._joined("maps")
        return None if flat is None else self._images(flat)

    @property
    def masks(self):
        """Ground-truth masks, bool, shaped like :attr:`maps`, unpacked from the stored bits on
        each access (keep the result rather than reading it twice); None without masks."""
        bits = self._joined("mask_bits")
        if bits is None:
            return None
        flat = np.unpackbits(bits, count=self._joined("maps").size).view(bool)
        return self._images(flat)

    @property
    def nbytes(self) -> int:
        """Memory held by the accumulated arrays, in bytes."""
        return int(sum(part.nbytes for parts in self._parts.values() for part in parts))

    def state_arrays(self) -> dict[str, np.ndarray | None]:
        """Everything accumulated, compact, as keyword arguments of :meth:`from_arrays`:
        ``scores``, ``labels``, ``maps`` (flat float32), ``mask_bits`` (packed bits of the flat
        masks) and ``shapes`` ([N,2]); the last three are None without masks."""
        return {key: self._joined(key) for key in _KEYS}

    @classmethod
    def from_arrays(cls, scores, labels, maps=None, masks=None, fpr_limit: float = 0.3,
                    mask_bits=None, shapes=None) -> AnomalyMetricState:
        """A state holding these arrays (``has_masks`` = masks given), as if from one update().

        Either ``maps`` and ``masks`` as for :meth:`update`, or the compact form of
        :meth:`state_arrays`: ``maps`` flat, ``mask_bits`` and ``shapes``.
        """
        if shapes is not None:
            state = cls(has_masks=True, fpr_limit=fpr_limit)
            shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
            flat = as_scores(maps, "maps").reshape(-1) if np.size(to_numpy(maps)) else np.zeros(0, np.float32)
            bits = np.asarray(to_numpy(mask_bits), dtype=np.uint8).reshape(-1)
            n_pixels = int(np.prod(shapes, axis=1).sum())
            if flat.size != n_pixels or bits.size != (n_pixels + 7) // 8:
                raise ValueError(f"maps ({flat.size}) and mask_bits ({bits.size} bytes) do not fit the "
                                 f"shapes ({n_pixels} pixels)")
            scores = as_scores(scores, "scores").reshape(-1).astype(np.float64) if np.size(to_numpy(scores)) \
                else np.zeros(0)
            labels = np.array(as_binary(labels, "labels").reshape(-1))
            if not scores.size == labels.size == len(shapes):
                raise ValueError(f"{scores.size} scores, {labels.size} labels and {len(shapes)} shapes")
            arrays = {"scores": scores, "labels": labels, "maps": np.array(flat, dtype=np.float32),
                      "mask_bits": bits.copy(), "shapes": shapes.copy()}
            state._parts = {key: [arrays[key]] for key in _KEYS}
            return state
        state = cls(has_masks=masks is not None, fpr_limit=fpr_limit)
        if np.size(to_numpy(scores)):  # a process may have seen no image
            state.update(maps, scores, labels, masks)
        return state

    @classmethod
    def merge(cls, states: list[AnomalyMetricState]) -> AnomalyMetricState:
        """One state with the batches of all ``states`` in order (same has_masks and fpr_limit)."""
        if not states:
            raise ValueError("merge() needs at least one state")
        first = states[0]
        if any((s.has_masks, s.fpr_limit) != (first.has_masks, first.fpr_limit) for s in states):
            raise ValueError("cannot merge states with different has_masks or fpr_limit")
        merged = cls(first.has_masks, first.fpr_limit)
        for key in _KEYS:
            merged._parts[key] = [part for s in states for part in s._parts[key]]
        return merged

    def take(self, indices) -> AnomalyMetricState:
        """A new state with the images ``indices`` (positions in this state), in that order."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.scores.size
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ValueError(f"take(): indices must be in [0, {n})")
        idx = idx % max(n, 1)
        state = type(self)(self.has_masks, self.fpr_limit)
        arrays = {"scores": self.scores[idx], "labels": self.labels[idx]}
        if self.has_masks:
            shapes = self.shapes
            offsets = np.zeros(len(shapes) + 1, dtype=np.int64)
            np.cumsum(np.prod(shapes, axis=1), out=offsets[1:])
            flat_masks = np.unpackbits(self._joined("mask_bits"), count=int(offsets[-1]))
            pick = lambda flat: (  # noqa: E731
                np.concatenate([flat[offsets[i] : offsets[i + 1]] for i in idx]) if idx.size else flat[:0]
            )
            arrays.update(maps=pick(self._joined("maps")), mask_bits=np.packbits(pick(flat_masks)),
                          shapes=shapes[idx])
        for key, value in arrays.items():
            state._parts[key] = [np.array(value, dtype=_DTYPES[key])]
        if not self.has_masks:
            for key in _PIXEL_KEYS:
                state._parts[key] = []
        return state

    def compute(self, pixel_threshold: float | None = None, image_threshold: float | None = None,
                rd4ad_pro: bool = False) -> dict:
        """All metrics as a flat dict of python floats (None when undefined or not applicable).

        ``image_auroc``, ``image_ap`` (average precision); ``pixel_auroc``, ``pixel_ap``,
        ``aupro`` (up to ``fpr_limit``) with masks; with ``rd4ad_pro`` (opt-in) also
        ``rd4ad_pro``, the RD4AD authors' per-image PRO (:mod:`.pro_rd4ad`, not comparable with
        ``aupro``); ``test_f1_threshold``: the image-F1-optimal threshold chosen on these (test) labels, with
        ``image_f1_test_thr`` and ``dice_test_f1_thr`` (pooled Dice of the maps at that same
        threshold, the thesis protocol; optimistic); ``image_f1_val_thr`` / ``dice_val_thr`` at the
        given thresholds derived from validation normals; ``n_images``, ``n_anomalous`` (ints);
        ``notes``: list of reasons for the None values; ``metric_seconds``: time spent here.
        """
        start = time.perf_counter()
        notes: list[str] = []

        def attempt(name, fn):
            try:
                return fn()
            except ValueError as error:
                notes.append(f"{name}: {error}")
                return None

        scores, labels, maps, masks = self.scores, self.labels, self.maps, self.masks
        test_thr = attempt("test_f1_threshold", lambda: f1_optimal_threshold(scores, labels))
        with_test_thr = test_thr is not None
        with_masks = self.has_masks and maps.size > 0
        result = {
            "image_auroc": attempt("image_auroc", lambda: image_auroc(scores, labels)),
            "image_ap": attempt("image_ap", lambda: image_ap(scores, labels)),
            "pixel_auroc": attempt("pixel_auroc", lambda: pixel_auroc(maps, masks)) if with_masks else None,
            "pixel_ap": attempt("pixel_ap", lambda: pixel_ap(maps, masks)) if with_masks else None,
            "aupro": attempt("aupro", lambda: aupro(maps, masks, self.fpr_limit)) if with_masks else None,
            "test_f1_threshold": test_thr,
            "image_f1_test_thr": image_f1(scores, labels, test_thr) if with_test_thr else None,
            "dice_test_f1_thr": dice(maps, masks, test_thr) if with_test_thr and with_masks else None,
            "image_f1_val_thr": (
                attempt("image_f1_val_thr", lambda: image_f1(scores, labels, image_threshold))
                if image_threshold is not None
                else None
            ),
            "dice_val_thr": (
                dice(maps, masks, pixel_threshold) if pixel_threshold is not None and with_masks else None
            ),
            "n_images": int(scores.size),
            "n_anomalous": int(labels.sum()),
            "notes": notes,
        }
        if rd4ad_pro:
            result["rd4ad_pro"] = (
                attempt("rd4ad_pro", lambda: rd4ad_pro_metric(maps, masks)) if with_masks else None
            )
        result["metric_seconds"] = time.perf_counter() - start
        return result
