"""A plain folder of good and bad images (``data=folder``).

Layout (folders relative to ``root``, or absolute)::

    <normal_dir>/*.png                      normal images (training; and test, see below)
    <abnormal_dir>/*.png                    anomalous test images, defect type "anomaly" ...
    <abnormal_dir>/<defect>/*.png           ... or one subfolder per defect type (or both)
    <mask_dir>/[<defect>/]<stem><mask_suffix>.png    optional: one mask per anomalous image
    <normal_test_dir>/*.png                 optional: the normal test images

Without ``normal_test_dir`` a seeded share ``test_split`` of the normal images is held out for the
test set (drawn before, and independently of, the validation hold-out). Without ``mask_dir`` the
data set has no masks: pixel metrics are null, as for MNIST. ``category`` only names the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from anomaly_kd.data.images import list_images
from anomaly_kd.data.indexed import (
    IndexedDataModule,
    check_unique_stems,
    masks_by_stem,
    pair_masks,
    require_images,
)
from anomaly_kd.data.mvtec import GOOD, Sample
from anomaly_kd.errors import UserError

ANOMALY = "anomaly"  # defect type of the images directly in abnormal_dir


def held_out(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held out) positions of ``range(n)``: ``ceil(n * share)`` held out, seeded (a stream of
    its own, so it does not repeat the validation hold-out's draw)."""
    n_out = math.ceil(round(n * share, 9))
    if n - n_out < 1:
        raise UserError(f"only {n} normal image(s), none left for training after the data.test_split={share} "
                        "hold-out; add images, lower data.test_split or give data.normal_test_dir")
    perm = np.random.default_rng([seed, 1]).permutation(n)
    return sorted(perm[n_out:].tolist()), sorted(perm[:n_out].tolist())


class FolderDataModule(IndexedDataModule):
    """Normal / abnormal folders of any names. See the module doc."""

    title = "folder"

    def __init__(self, *args, normal_dir: str = "normal", abnormal_dir: str = "abnormal", mask_dir: str | None = None,
                 normal_test_dir: str | None = None, mask_suffix: str = "", test_split: float = 0.2, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0 < float(test_split) < 1 and normal_test_dir in (None, ""):
            raise UserError(f"data.test_split={test_split!r} must be a number with 0 < test_split < 1 "
                            "(or give data.normal_test_dir); fix data.test_split")
        self.normal_dir, self.abnormal_dir = normal_dir, abnormal_dir
        self.mask_dir = mask_dir or None
        self.normal_test_dir = normal_test_dir or None
        self.mask_suffix = mask_suffix or ""
        self.test_split = float(test_split)
        self.has_masks = self.mask_dir is not None

    def _path(self, name: str, option: str) -> Path:
        root = Path(self.root).expanduser()
        folder = Path(name).expanduser()
        folder = folder if folder.is_absolute() else root / folder
        if not folder.is_dir():
            raise UserError(f"data.{option}: folder {folder} does not exist; set data.{option}=<folder> "
                            f"(absolute, or relative to paths.data_dir={root})")
        return folder

    def index(self):
        normals = [Sample(str(p), 0, GOOD) for p in require_images(self._path(self.normal_dir, "normal_dir"),
                                                                    "the normal images")]
        if self.normal_test_dir:
            test = [Sample(str(p), 0, GOOD) for p in require_images(
                self._path(self.normal_test_dir, "normal_test_dir"), "the normal test images")]
        else:
            kept, out = held_out(len(normals), self.test_split, self.seed)
            normals, test = [normals[i] for i in kept], [normals[i] for i in out]
        test += self._abnormal()
        return normals, None, test

    def _abnormal(self) -> list[Sample]:
        folder = self._path(self.abnormal_dir, "abnormal_dir")
        groups = [(ANOMALY, folder)] + [(d.name, d) for d in sorted(folder.iterdir()) if d.is_dir()]
        images = [(defect, p) for defect, d in groups for p in list_images(d)]
        if not images:
            raise UserError(f"{folder} has no images; it must hold the anomalous test images, directly or in one "
                            "subfolder per defect type")
        for _, d in groups:
            check_unique_stems(list_images(d))
        if not self.has_masks:
            return [Sample(str(p), 1, defect) for defect, p in images]
        mask_root = self._path(self.mask_dir, "mask_dir")
        masks = masks_by_stem(mask_root, self.mask_suffix, recursive=True)
        return pair_masks([p for _, p in images], masks, {p: defect for defect, p in images}, mask_root, folder,
                          self.mask_suffix, key=lambda p: str(p.relative_to(folder).with_suffix("")))
