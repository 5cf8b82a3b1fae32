"""Shared ground of the file-based layouts: index files into :class:`Sample` lists, check them, split.

A layout module (``folder``, ``visa``, ``mvtec3d``, ``mvtec_loco``, ``mvtec_ad2``, ``btad``)
subclasses :class:`IndexedDataModule` and implements :meth:`~IndexedDataModule.index`, which
returns ``(train, val, test)`` Samples; ``val`` is None when the layout has no validation folder
of its own: the seeded ``val_split`` hold-out of the training normals is then used, as for MVTec AD.
Every image/mask header is read in ``setup`` (sizes must match), pixels are decoded once through
``data.cache``. The helpers here give the same one-line errors in every layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from anomaly_kd.data.base import AnomalyDataModule, seeded_split
from anomaly_kd.data.images import MASK_RESIZE_RULES, image_size_of, is_image_file, list_images, mask_files
from anomaly_kd.data.mvtec import ImageFolderDataset, Sample, _size_mismatch
from anomaly_kd.errors import UserError

IMAGE_KINDS = ".png/.jpg/.bmp/.tif"


def require_images(folder: Path, what: str) -> list[Path]:
    """The images directly in ``folder``, or a UserError saying it is missing or empty."""
    images = list_images(folder)
    if not images:
        state = "has no images" if folder.is_dir() else "is missing"
        raise UserError(f"{folder} {state}; it must hold {what} ({IMAGE_KINDS})")
    return images


def masks_by_stem(folder: Path, suffix: str = "", recursive: bool = False) -> dict[str, Path]:
    """Mask files of ``folder`` keyed by the stem of their image (``<stem><suffix>.<ext>``); a
    file not named so is an error. ``recursive``: keys are paths relative to ``folder`` (no
    extension), so subfolders pair with subfolders."""
    files = sorted(p for p in folder.rglob("*") if is_image_file(p)) if recursive else list_images(folder)
    masks: dict[str, Path] = {}
    for p in files:
        if suffix and not p.stem.endswith(suffix):
            raise UserError(f"mask file {p} is not named <image name>{suffix}.<ext>; rename or delete it")
        stem = p.stem[: len(p.stem) - len(suffix)]
        key = str(p.relative_to(folder).with_name(stem)) if recursive else stem
        if key in masks:
            raise UserError(f"two masks for image {key} in {p.parent} ({masks[key].name}, {p.name}); keep one")
        masks[key] = p
    return masks


def missing_mask(image: Path, expected: Path) -> UserError:
    return UserError(f"test image {image} has no mask; expected {expected}.<png|bmp|...> next to the other masks")


def orphan_mask(mask: Path, expected_image: Path) -> UserError:
    return UserError(
        f"mask {mask} has no test image (expected {expected_image}.<png|jpg|...>); add the image or delete the mask"
    )


def pair_masks(images: list[Path], masks: dict[str, Path], defect: str | Mapping[Path, str], gt_dir: Path,
               image_dir: Path, suffix: str = "", key: Callable[[Path], str] = lambda p: p.stem) -> list[Sample]:
    """Anomalous test Samples of ``images``, each with the mask of its ``key`` (its stem, or e.g. a
    relative path for nested folders), taken from ``masks``; ``defect``: the defect type of all
    images, or per image. An image without a mask (expected as ``gt_dir/<key><suffix>``) or a mask
    left without an image (expected as ``image_dir/<key>``) is a one-line error."""
    masks = dict(masks)
    samples = []
    for image in images:
        mask = masks.pop(key(image), None)
        if mask is None:
            raise missing_mask(image, gt_dir / f"{key(image)}{suffix}")
        kind = defect if isinstance(defect, str) else defect[image]
        samples.append(Sample(str(image), 1, kind, str(mask)))
    if masks:
        stem, mask = next(iter(masks.items()))
        raise orphan_mask(mask, image_dir / stem)
    return samples


def check_unique_stems(images: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for p in images:
        if p.stem in seen:
            raise UserError(f"two images named {p.stem} in {p.parent} ({seen[p.stem].name}, {p.name}); keep one")
        seen[p.stem] = p


def check_sizes(samples: list[Sample]) -> None:
    """Every mask file has its image's size (headers only)."""
    for s in samples:
        size = image_size_of(Path(s.path))
        for mask in mask_files(s.mask_path):
            mask_size = image_size_of(Path(mask))
            if mask_size != size:
                raise _size_mismatch(s.path, size, mask, mask_size)


class IndexedDataModule(AnomalyDataModule):
    """A data set whose layout module indexes files into Samples. See :class:`AnomalyDataModule`;
    ``mask_resize``: how masks reach ``image_size``."""

    #: the data set's name and official category names, for the unknown-category error
    title: str = ""
    official_categories: tuple[str, ...] = ()

    def __init__(self, *args, mask_resize: str = "nearest", **kwargs):
        super().__init__(*args, **kwargs)
        if mask_resize not in MASK_RESIZE_RULES:
            raise UserError(f"data.mask_resize={mask_resize!r} must be one of {', '.join(MASK_RESIZE_RULES)}")
        self.mask_resize = mask_resize

    def index(self) -> tuple[list[Sample], list[Sample] | None, list[Sample]]:
        """(train normals, validation normals or None, test samples), checked."""
        raise NotImplementedError

    def _build_datasets(self):
        train, val, test = self.index()
        check_sizes([*train, *(val or []), *test])
        if val is None:
            train_idx, val_idx = seeded_split(len(train), self.val_split, self.seed)
            train, val = [train[i] for i in train_idx], [train[i] for i in val_idx]
        datasets = (
            ImageFolderDataset(train, self.image_size),
            ImageFolderDataset(val, self.image_size),
            ImageFolderDataset(test, self.image_size, self.mask_resize),
        )
        if not self.has_masks:
            for dataset in datasets:
                dataset.has_masks = False  # the cache stores no mask
        return datasets
