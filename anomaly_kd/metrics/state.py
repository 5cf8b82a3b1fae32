"""Accumulate an evaluation epoch batch by batch, then compute every metric once.

The state only keeps arrays on the CPU: image scores (float64), labels (bool) and, when the
dataset has masks, the anomaly maps (float32) and masks (bool). Batches are stored as a list and
concatenated lazily. For multi-process evaluation, gather ``state_arrays()`` of every process,
rebuild states with ``from_arrays`` and ``merge`` them: the result is the same as one state that
saw every batch.

Undefined metrics (e.g. AUROC when the test set has a single class, or pixel metrics without any
anomalous pixel) do not raise in :meth:`AnomalyMetricState.compute`: they are ``None`` and the
reason is added to ``result["notes"]``. The functional API raises ``ValueError`` instead.
"""

from __future__ import annotations

import time

import numpy as np

from ._inputs import as_binary, as_maps, as_scores, check_fpr_limit, to_numpy
from .pro import aupro
from .roc import image_auroc, pixel_auroc
from .thresholds import dice, f1_optimal_threshold, image_f1

_DTYPES = {"scores": np.float64, "labels": bool, "maps": np.float32, "masks": bool}
_KEYS = tuple(_DTYPES)


class AnomalyMetricState:
    """Scores, labels and (if ``has_masks``) maps and masks of an evaluation epoch."""

    def __init__(self, has_masks: bool, fpr_limit: float = 0.3):
        self.has_masks = bool(has_masks)
        self.fpr_limit = check_fpr_limit(fpr_limit)
        self._parts: dict[str, list[np.ndarray]] = {key: [] for key in _KEYS}

    def update(self, maps, scores, labels, masks=None) -> None:
        """Add a batch: ``maps`` [B,H,W] or [B,1,H,W], ``scores`` [B], ``labels`` [B] (1 =
        anomalous), ``masks`` like ``maps``. Without ``has_masks``, ``maps``/``masks`` are ignored.
        Everything is copied (tensors are detached and moved to the CPU)."""
        scores = as_scores(scores, "scores").reshape(-1).astype(np.float64)
        labels = np.array(as_binary(labels, "labels").reshape(-1))
        if scores.shape != labels.shape:
            raise ValueError(f"{scores.size} scores but {labels.size} labels in the batch")
        if self.has_masks:
            if maps is None or masks is None:
                raise ValueError("this state has_masks=True: update() needs maps and masks")
            maps, masks = as_maps(maps, masks)
            if maps.shape[0] != scores.size:
                raise ValueError(f"{maps.shape[0]} maps but {scores.size} scores in the batch")
            self._parts["maps"].append(maps.astype(np.float32))
            self._parts["masks"].append(np.array(masks))
        self._parts["scores"].append(scores)
        self._parts["labels"].append(labels)

    def _joined(self, key: str) -> np.ndarray | None:
        parts = self._parts[key]
        if key in ("maps", "masks") and not self.has_masks:
            return None
        if len(parts) != 1:
            parts[:] = [np.concatenate(parts) if parts else np.zeros(0, dtype=_DTYPES[key])]
        return parts[0]

    @property
    def scores(self) -> np.ndarray:
        """Image scores [N], float64."""
        return self._joined("scores")

    @property
    def labels(self) -> np.ndarray:
        """Image labels [N], bool (True = anomalous)."""
        return self._joined("labels")

    @property
    def maps(self) -> np.ndarray | None:
        """Anomaly maps [N,H,W] float32, or None without masks."""
        return self._joined("maps")

    @property
    def masks(self) -> np.ndarray | None:
        """Ground-truth masks [N,H,W] bool, or None without masks."""
        return self._joined("masks")

    def state_arrays(self) -> dict[str, np.ndarray | None]:
        """Everything accumulated, as keyword arguments of :meth:`from_arrays`."""
        return {key: self._joined(key) for key in _KEYS}

    @classmethod
    def from_arrays(cls, scores, labels, maps=None, masks=None, fpr_limit: float = 0.3):
        """A state holding these arrays (``has_masks`` = masks given), as if from one update()."""
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

    def compute(self, pixel_threshold: float | None = None, image_threshold: float | None = None) -> dict:
        """All metrics as a flat dict of python floats (None when undefined or not applicable).

        ``image_auroc``; ``pixel_auroc``, ``aupro`` (up to ``fpr_limit``) with masks;
        ``test_f1_threshold``: the image-F1-optimal threshold chosen on these (test) labels, with
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
            "pixel_auroc": attempt("pixel_auroc", lambda: pixel_auroc(maps, masks)) if with_masks else None,
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
        result["metric_seconds"] = time.perf_counter() - start
        return result
