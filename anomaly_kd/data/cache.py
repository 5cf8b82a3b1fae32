"""Decode each image and mask once: the ``data.cache`` of every data set.

A :class:`DecodedDataset` knows how to decode its item ``i`` (image file or MNIST row -> uint8
``[C, S, S]``, mask -> uint8 ``[1, S, S]``) and what identifies its source bytes; this module
decides when that work runs:

* ``none``: every access decodes and resizes again (the behaviour before the cache).
* ``ram`` (default): the whole data set is decoded once, in the main process, when its loader is
  made (:meth:`DecodedDataset.build_cache`), into one uint8 tensor of images and one of masks
  packed 8 per byte. DataLoader workers share those tensors (inherited on fork, shared memory
  otherwise); under DDP each process holds its own copy. Before building, the bytes it needs are
  compared with the memory available: a cache that would not fit stops with one line.
* ``disk``: one file per item under ``cache_dir/v<version>-s<size>-c<channels>/``, named by a
  hash of (absolute path, modification time in ns, size in bytes of the image and of its mask,
  image size, channels, :data:`~anomaly_kd.data.images.RESIZE_SETTINGS`, :data:`CACHE_VERSION`):
  an edited file gets a new entry, other jobs of a sweep and later runs reuse the entries. An
  entry is written to a temporary file and renamed into place: two processes (workers, DDP
  ranks, jobs) that decode the same item at once write the same bytes, the last rename wins and
  a reader never sees a partial file; no lock is needed.

Every mode returns the same bytes for the same settings: the decode is :func:`resize_image` /
:func:`resize_mask` in all of them (tested for MVTec, textures and MNIST).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from anomaly_kd.data.images import RESIZE_SETTINGS
from anomaly_kd.errors import UserError

log = logging.getLogger(__name__)

CACHE_MODES = ("ram", "disk", "none")
CACHE_VERSION = 1  # bump when the bytes of an entry change for the same key


def check_cache_mode(mode) -> str:
    if mode not in CACHE_MODES:
        raise UserError(f"data.cache={mode!r} must be one of {', '.join(CACHE_MODES)}; fix data.cache")
    return str(mode)


def file_key(path: str | os.PathLike) -> str:
    """``'<absolute path>|<mtime_ns>|<size>'``: what identifies a source file's bytes here."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_mtime_ns}|{st.st_size}"


def available_memory() -> int:
    """Bytes of memory available to new allocations (psutil; else /proc/meminfo or sysconf)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


class DecodedDataset(Dataset):
    """Items of the shared batch format (see :mod:`anomaly_kd.data.images`) through the cache.

    Subclasses set ``image_size`` and implement ``__len__``, :meth:`decode`, :meth:`source_key`
    and :meth:`info`; ``channels = 1`` for a source known to be grey (stored once, repeated to
    RGB when read); ``has_masks = False`` when no item has a mask (none stored).
    """

    image_size: int
    channels: int = 3
    mask_resize: str = "nearest"  # data.mask_resize: part of the disk cache's key
    has_masks: bool = True
    cache_mode: str = "none"
    cache_dir: str | None = None
    _images: torch.Tensor | None = None  # ram: [N, C, S, S] uint8
    _masks: torch.Tensor | None = None  # ram: [N, ceil(S*S/8)] uint8, np.packbits of each mask

    # ---------------------------------------------------------------- to implement
    def decode(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(uint8 ``[channels, S, S]``, uint8 ``[1, S, S]`` or None) of item ``index``."""
        raise NotImplementedError

    def source_key(self, index: int) -> str:
        """A string that changes whenever the source bytes of item ``index`` change."""
        raise NotImplementedError

    def info(self, index: int) -> dict:
        """``label``, ``path``, ``mask_path``, ``defect`` of item ``index`` (no decoding)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the cache
    def configure_cache(self, mode: str, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache_mode = check_cache_mode(mode)
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self._images = self._masks = None
        if self.cache_mode == "disk":
            if not self.cache_dir:
                raise UserError("data.cache=disk needs data.cache_dir=<folder>; set it or use data.cache=ram")
            folder = self._disk_folder()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(
                    f"cannot create the image cache folder {folder} ({err.strerror}); "
                    "set data.cache_dir to a writable folder or use data.cache=ram"
                ) from err

    def _image_bytes(self) -> int:
        return self.channels * self.image_size * self.image_size

    def _mask_bytes(self) -> int:
        return (self.image_size * self.image_size + 7) // 8 if self.has_masks else 0

    def cache_bytes(self) -> int:
        """Bytes the RAM cache of this data set holds."""
        return len(self) * (self._image_bytes() + self._mask_bytes())

    def build_cache(self) -> None:
        """Decode every item into memory (``ram``; a no-op otherwise or when built). Runs in the
        process that makes the loader, before workers start."""
        if self.cache_mode != "ram" or self._images is not None or len(self) == 0:
            return
        need, free = self.cache_bytes(), available_memory()
        if need > 0.9 * free:
            raise UserError(
                f"the RAM image cache of {len(self)} images at {self.image_size} px needs {_gib(need)} but "
                f"{_gib(free)} of memory is available; use data.cache=disk (decoded once to data.cache_dir) "
                "or data.cache=none (decode every epoch)"
            )
        n, s = len(self), self.image_size
        with torch.inference_mode(False):  # a loader made inside trainer.test: still plain tensors
            images = torch.empty((n, self.channels, s, s), dtype=torch.uint8)
            masks = torch.zeros((n, self._mask_bytes()), dtype=torch.uint8)
        image_rows, mask_rows = images.numpy(), masks.numpy()  # written through numpy by the threads

        def fill(i: int) -> None:
            image, mask = self.decode(i)
            image_rows[i] = image.numpy()
            if self.has_masks and mask is not None:
                mask_rows[i] = np.packbits(mask.numpy().reshape(-1))

        log.info("Decoding %d images at %d px into the RAM cache (%.1f MiB)", n, s, need / 2**20)
        threads = max(1, min(8, os.cpu_count() or 1))  # PIL decoding and torch resizing release the GIL
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fill, range(n)))  # list(): re-raises the first error (e.g. an unreadable file)
        self._images, self._masks = images, masks

    def _disk_folder(self) -> Path:
        return Path(self.cache_dir) / f"v{CACHE_VERSION}-s{self.image_size}-c{self.channels}"

    def _disk_path(self, index: int) -> Path:
        key = (f"{CACHE_VERSION}|{RESIZE_SETTINGS}|{self.mask_resize}|{self.image_size}|{self.channels}|"
               f"{self.source_key(index)}")
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._disk_folder() / digest[:2] / f"{digest}.bin"

    def _from_disk(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        path = self._disk_path(index)
        size = self._image_bytes() + self._mask_bytes()
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError:
            raw = None
        if raw is not None and raw.size == size:
            return self._unpack(raw[: self._image_bytes()], raw[self._image_bytes() :])
        image, mask = self.decode(index)
        packed = np.packbits(mask.numpy().reshape(-1)) if self.has_masks and mask is not None else None
        payload = image.numpy().tobytes() + (
            (packed if packed is not None else np.zeros(self._mask_bytes(), np.uint8)).tobytes()
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(payload)
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise UserError(
                f"could not write the image cache entry {path} ({err.strerror}); free space, set "
                "data.cache_dir to a writable folder or use data.cache=ram"
            ) from err
        return image, mask

    def _unpack(self, image: np.ndarray, packed: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.image_size
        image_t = torch.from_numpy(np.ascontiguousarray(image).reshape(self.channels, s, s))
        if not self.has_masks:
            return image_t, None
        mask = np.unpackbits(packed, count=s * s).reshape(1, s, s)
        return image_t, torch.from_numpy(mask)

    def _pixels(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._images is not None:  # ram, built
            image, mask = self._unpack(self._images[index].numpy(), self._masks[index].numpy())
            return image.clone(), mask  # a copy: nothing downstream can write into the cache
        if self.cache_mode == "disk":
            return self._from_disk(index)
        return self.decode(index)  # none, or ram not built yet (an item read outside a loader)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        image, mask = self._pixels(index)
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        if mask is None:
            mask = torch.zeros((1, self.image_size, self.image_size), dtype=torch.uint8)
        meta = self.info(index)
        return {
            "image": image.contiguous(),
            "label": torch.tensor(int(meta["label"]), dtype=torch.int64),
            "mask": mask,
            "path": str(meta["path"]),
            "mask_path": str(meta.get("mask_path", "")),
            "defect": str(meta["defect"]),
            "index": index,
        }
