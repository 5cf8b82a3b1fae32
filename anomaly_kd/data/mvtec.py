"""MVTec AD (and any folder in its layout).

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect>/*.png                      (test/good = normal)
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png     (for every defect but good)

Any category folder name works. The files are indexed and paired, and every image and mask header
is read, in ``setup`` (so missing/extra masks, non-image files and mask/image size mismatches are
reported before training); pixels are decoded lazily, where a truncated file is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anomaly_kd.data.base import AnomalyDataModule, seeded_split
from anomaly_kd.data.cache import DecodedDataset, file_key
from anomaly_kd.data.images import (
    MASK_RESIZE_RULES,
    image_size_of,
    list_images,
    mask_files,
    load_mask,
    load_rgb,
    resize_image,
    resize_mask,
)
from anomaly_kd.errors import UserError

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
GOOD = "good"
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    defect: str
    mask_path: str = ""


class ImageFolderDataset(DecodedDataset):
    """Items in the shared batch format from a list of :class:`Sample` (through ``data.cache``)."""

    def __init__(self, samples: list[Sample], image_size: int, mask_resize: str = "nearest"):
        self.samples = list(samples)
        self.image_size = image_size
        self.mask_resize = mask_resize

    def __len__(self) -> int:
        return len(self.samples)

    def decode(self, index: int):
        s = self.samples[index]
        pixels = load_rgb(s.path)
        mask = load_mask(s.mask_path) if s.mask_path else None
        if mask is not None and mask.shape != pixels.shape[:2]:
            raise _size_mismatch(s.path, pixels.shape[1::-1], s.mask_path, mask.shape[::-1])
        resized_mask = None if mask is None else resize_mask(mask, self.image_size, self.mask_resize)
        return resize_image(pixels, self.image_size), resized_mask

    def source_key(self, index: int) -> str:
        s = self.samples[index]
        return "|".join(file_key(p) for p in [s.path, *mask_files(s.mask_path)])

    def info(self, index: int) -> dict:
        s = self.samples[index]
        return {"label": s.label, "path": s.path, "mask_path": s.mask_path, "defect": s.defect}


def _size_mismatch(image, image_wh, mask, mask_wh) -> UserError:
    return UserError(
        f"mask {mask} is {mask_wh[0]}x{mask_wh[1]} but its image {image} is {image_wh[0]}x{image_wh[1]}; "
        "masks must have the size of their image, fix or replace the mask"
    )


def category_dir(
    root: str | Path, category: str, official: tuple[str, ...] = MVTEC_CATEGORIES, title: str = "MVTec AD",
    marker: str = "train",
) -> Path:
    """``<root>/<category>`` or a UserError saying which option to change, listing the category
    folders found there (those holding ``marker``) and the ``official`` names of the data set ``title``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data folder {root} does not exist; set paths.data_dir=<folder> (or env ANOMALY_KD_DATA_DIR) "
            "to the folder that holds the category folders"
        )
    folder = root / category
    if folder.is_dir():
        return folder
    present = sorted(p.name for p in root.iterdir() if (p / marker).is_dir())
    if category in official:
        hint = (
            f"'{category}' is an official {title} category but is not in that folder: "
            "extract it there or point paths.data_dir at the folder that has it"
        )
    else:
        hint = f"choose one with category=<name> (official {title} categories: {', '.join(official)})"
    raise UserError(f"category '{category}' not found in {root} (categories there: {', '.join(present) or 'none'}); {hint}")


def index_category(folder: Path) -> tuple[list[Sample], list[Sample]]:
    """(train normals, test samples) of one category folder, checked as the module doc says."""
    train_dir = folder / "train" / GOOD
    train = [Sample(str(p), 0, GOOD) for p in list_images(train_dir)]
    if not train:
        state = "has no images" if train_dir.is_dir() else "is missing"
        raise UserError(f"{train_dir} {state}; it must hold the normal training images (.png/.jpg/.bmp/.tif)")
    test_dir = folder / "test"
    defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    test: list[Sample] = []
    for defect in defects:
        images = list_images(test_dir / defect)
        _check_unique_stems(images)
        if defect == GOOD:
            test += [Sample(str(p), 0, GOOD) for p in images]
            continue
        masks = _masks_by_stem(folder / "ground_truth" / defect)
        for image in images:
            mask = masks.pop(image.stem, None)
            if mask is None:
                raise UserError(
                    f"test image {image} has no mask; expected {folder / 'ground_truth' / defect / image.stem}{MASK_SUFFIX}.png "
                    "(masks are ground_truth/<defect>/<image name>_mask.<ext>)"
                )
            test.append(Sample(str(image), 1, defect, str(mask)))
        if masks:
            _orphan_mask(next(iter(masks.values())), test_dir / defect)
    gt_root = folder / "ground_truth"
    for gt_dir in sorted(gt_root.iterdir()) if gt_root.is_dir() else []:
        if gt_dir.is_dir() and gt_dir.name not in (GOOD, *defects) and list_images(gt_dir):
            _orphan_mask(list_images(gt_dir)[0], test_dir / gt_dir.name)
    if not test:
        raise UserError(f"{test_dir} has no images; it must hold test/good and test/<defect> folders of images")
    for s in train + test:
        size = image_size_of(Path(s.path))
        mask_size = image_size_of(Path(s.mask_path)) if s.mask_path else size
        if mask_size != size:
            raise _size_mismatch(s.path, size, s.mask_path, mask_size)
    return train, test


def _check_unique_stems(images: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for p in images:
        if p.stem in seen:
            raise UserError(f"two images named {p.stem} in {p.parent} ({seen[p.stem].name}, {p.name}); keep one")
        seen[p.stem] = p


def _masks_by_stem(gt_dir: Path) -> dict[str, Path]:
    masks: dict[str, Path] = {}
    for p in list_images(gt_dir):
        if not p.stem.endswith(MASK_SUFFIX):
            raise UserError(f"mask file {p} is not named <image name>{MASK_SUFFIX}.<ext>; rename or delete it")
        masks[p.stem[: -len(MASK_SUFFIX)]] = p
    return masks


def _orphan_mask(mask: Path, image_dir: Path) -> None:
    stem = mask.stem[: -len(MASK_SUFFIX)] if mask.stem.endswith(MASK_SUFFIX) else mask.stem
    raise UserError(
        f"mask {mask} has no test image (expected {image_dir / stem}.<png|jpg|...>); add the image or delete the mask"
    )


class MVTecDataModule(AnomalyDataModule):
    """MVTec AD category (or any folder in the MVTec layout). See :class:`AnomalyDataModule`;
    ``mask_resize``: how masks reach ``image_size`` (:func:`~anomaly_kd.data.images.mask_tensor`)."""

    def __init__(self, *args, mask_resize: str = "nearest", official_categories=None, title: str = "MVTec AD",
                 **kwargs):
        super().__init__(*args, **kwargs)
        if mask_resize not in MASK_RESIZE_RULES:
            raise UserError(f"data.mask_resize={mask_resize!r} must be one of {', '.join(MASK_RESIZE_RULES)}")
        self.mask_resize = mask_resize
        # another data set in the MVTec AD layout (MPDD): its official names, for the error messages
        self.official_categories = tuple(official_categories) if official_categories else MVTEC_CATEGORIES
        self.title = str(title)

    def _build_datasets(self):
        folder = category_dir(self.root, self.category, self.official_categories, self.title)
        train, test = index_category(folder)
        train_idx, val_idx = seeded_split(len(train), self.val_split, self.seed)
        return (
            ImageFolderDataset([train[i] for i in train_idx], self.image_size),
            ImageFolderDataset([train[i] for i in val_idx], self.image_size),
            ImageFolderDataset(test, self.image_size, self.mask_resize),
        )
