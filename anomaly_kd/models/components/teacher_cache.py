"""The frozen teacher's features of each training image, computed once (``model.cache_teacher``).

STFPM, the STFPM ensemble, Simple Student and RD4AD train without augmentation and their teacher
(RD4AD: the encoder) is frozen in eval mode, so its features for a training image are the same
every epoch. :class:`TeacherFeatureCache` keeps them, by the item's data-set ``index`` (every batch
of an :class:`~anomaly_kd.data.base.AnomalyDataModule` carries it), as the teacher computed them:
float32 by default, so training is unchanged (tested: identical weights after two epochs), or
float16 (``model.cache_teacher_dtype=float16``: half the memory, features rounded to 11 bits).

Where: on the training device when it is a GPU and the store fits in its free memory with room to
spare, else in RAM (pinned when a GPU trains, so the copies are asynchronous). A store that fits
in neither turns the cache off, with a warning. :class:`TeacherCacheMixin` switches the cache off
by itself when the datamodule has a random transform (``has_random_transforms``) or the batches
carry no ``index``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
GPU_HEADROOM = 0.5  # the store may take at most this share of the GPU's free memory
RAM_HEADROOM = 0.5  # ... and of the available RAM


def cache_dtype(name: str) -> torch.dtype:
    from anomaly_kd.errors import UserError

    if name not in CACHE_DTYPES:
        raise UserError(f"model.cache_teacher_dtype={name!r} must be one of {', '.join(CACHE_DTYPES)}.")
    return CACHE_DTYPES[name]


class TeacherFeatureCache:
    """Features ``[n_items, C_l, H_l, W_l]`` per teacher level ``l``, filled as items are seen."""

    def __init__(self, n_items: int, dtype: torch.dtype = torch.float32):
        self.n_items = int(n_items)
        self.dtype = dtype
        self.store: list[torch.Tensor] | None = None
        self.filled: torch.Tensor | None = None
        self.disabled = False
        # stored features come back in the memory layout the teacher gave (model.channels_last):
        # the loss's reductions then run in the same order whether a batch was cached or not
        self.memory_format = torch.contiguous_format

    def nbytes_for(self, features: list[torch.Tensor]) -> int:
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return self.n_items * sum(f[0].numel() for f in features) * itemsize

    def _allocate(self, features: list[torch.Tensor]) -> None:
        from anomaly_kd.data.cache import available_memory

        need = self.nbytes_for(features)
        device = features[0].device
        where = torch.device("cpu")
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if need <= GPU_HEADROOM * free:
                where = device
        if where.type == "cpu" and need > RAM_HEADROOM * available_memory():
            log.warning("The teacher-feature cache (%.2f GiB) fits neither the accelerator nor RAM: computing "
                        "the teacher's features every epoch.", need / 2**30)
            self.disabled = True
            return
        pin = where.type == "cpu" and device.type == "cuda"
        first = features[0]
        if first.dim() == 4 and not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last):
            self.memory_format = torch.channels_last
        self.store = [
            torch.empty((self.n_items, *f.shape[1:]), dtype=self.dtype, device=where, pin_memory=pin)
            for f in features
        ]
        self.filled = torch.zeros(self.n_items, dtype=torch.bool, device=where)
        log.info("Teacher-feature cache: %d images, %.1f MiB of %s on %s", self.n_items, need / 2**20,
                 str(self.dtype).replace("torch.", ""), where)

    def features(self, index: torch.Tensor, images: torch.Tensor, teacher: Callable) -> list[torch.Tensor]:
        """The teacher's features of ``images`` (items ``index``): from the store when every item
        is in it, else computed for the batch and stored for the items not yet there."""
        if self.store is not None:
            where = self.store[0].device
            idx = index.to(where)
            if bool(self.filled[idx].all()):
                non_blocking = images.device.type == "cuda"
                return [s[idx].to(images.device, non_blocking=non_blocking).float().contiguous(
                    memory_format=self.memory_format) for s in self.store]
        with torch.no_grad():
            computed = teacher(images)
        if self.disabled:
            return computed
        if self.store is None:
            self._allocate(computed)
            if self.disabled:
                return computed
        where = self.store[0].device
        idx = index.to(where)
        new = ~self.filled[idx]
        for s, f in zip(self.store, computed):
            s[idx[new]] = f[new.to(f.device)].to(where, self.dtype)
        self.filled[idx[new]] = True
        if self.dtype != torch.float32:  # every epoch sees the stored (rounded) values
            return [f.to(self.dtype).float().contiguous(memory_format=self.memory_format) for f in computed]
        return computed


class TeacherCacheMixin:
    """For an :class:`~anomaly_kd.models.components.base.AnomalyModule` whose ``self.model.teacher``
    is frozen: set ``self.cache_teacher`` and ``self.cache_teacher_dtype`` in ``__init__`` and get
    the training features from :meth:`teacher_features`."""

    cache_teacher: bool = False
    cache_teacher_dtype: str = "float32"
    _teacher_cache: TeacherFeatureCache | None = None

    def configure_teacher_cache(self, enabled: bool, dtype: str) -> None:
        cache_dtype(dtype)  # a bad name stops here, before training
        self.cache_teacher, self.cache_teacher_dtype = bool(enabled), str(dtype)

    def _teacher_cache_items(self) -> int | None:
        """Number of training items, or None (with the reason logged) when the cache must be off."""
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is None or getattr(datamodule, "train_set", None) is None:
            log.info("Teacher-feature cache off: no datamodule gives the training set.")
            return None
        if getattr(datamodule, "has_random_transforms", True):
            log.info("Teacher-feature cache off: the training data has random transforms.")
            return None
        return len(datamodule.train_set)

    def on_train_start(self) -> None:
        super().on_train_start()
        self._teacher_cache = None
        if self.cache_teacher:
            n = self._teacher_cache_items()
            if n:
                self._teacher_cache = TeacherFeatureCache(n, cache_dtype(self.cache_teacher_dtype))

    def on_train_end(self) -> None:
        super().on_train_end()
        self._teacher_cache = None  # frees the store before testing

    def teacher_features(self, batch: dict, images: torch.Tensor) -> list[torch.Tensor] | None:
        """The frozen teacher's features of a training batch from the cache; None when the cache
        is off (the model then computes them)."""
        cache = self._teacher_cache
        if cache is None or "index" not in batch:
            return None
        index = torch.as_tensor(batch["index"]).reshape(-1)
        return cache.features(index, images, self.model.teacher)
