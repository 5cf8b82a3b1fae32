"""Texture anomaly data made from scikit-image's bundled photos (brick, grass, gravel); no download.

Normal images are random crops (random 90-degree rotation and flip) from the top 60 % of the photo;
test images come from the disjoint bottom 40 %, and half of them get a synthetic defect (patch
pasted from another photo, scratch, stain, hole; see :mod:`anomaly_kd.data.defects` for the exact
masks). They are written once as PNG in the MVTec layout under ``<root>/textures/<category>/``,
deterministically from (seed, category), with ``manifest.json``; a later run with the same
settings reuses them, a changed seed/count/version regenerates them. A generation is written to a
temporary folder and renamed into place, so an interrupted one never leaves a partial set.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from anomaly_kd.data.base import check_int
from anomaly_kd.data.defects import DEFECT_KINDS, apply_defect
from anomaly_kd.data.mvtec import MVTecDataModule
from anomaly_kd.errors import UserError

TEXTURE_CATEGORIES = ("brick", "grass", "gravel")
GENERATOR_VERSION = 1
NORMAL_FRACTION = 0.6  # rows [0, 60 %) of the photo give the normal crops, the rest the test crops
MAX_CROP = 512 - round(512 * NORMAL_FRACTION)  # 205: the test region's height
MANIFEST = "manifest.json"


@functools.lru_cache(maxsize=None)
def texture_photo(category: str) -> np.ndarray:
    """The 512x512 grey uint8 photo shipped with scikit-image (read-only array)."""
    import skimage.data

    photo = np.asarray(getattr(skimage.data, category)(), dtype=np.uint8)
    photo.setflags(write=False)
    return photo


def _regions(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    split = round(photo.shape[0] * NORMAL_FRACTION)
    return photo[:split], photo[split:]


def _crop(region: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    y = int(rng.integers(0, region.shape[0] - size + 1))
    x = int(rng.integers(0, region.shape[1] - size + 1))
    crop = np.rot90(region[y : y + size, x : x + size], int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def _settings(category: str, seed: int, crop_size: int, n_train: int, n_test_good: int, n_test_defect: int) -> dict:
    photo = texture_photo(category)
    return {
        "generator_version": GENERATOR_VERSION,
        "category": category,
        "seed": seed,
        "crop_size": crop_size,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect": n_test_defect,
        "photo_crc32": zlib.crc32(photo.tobytes()),
    }


def _defect_counts(n_test_defect: int) -> dict[str, int]:
    return {k: len(range(i, n_test_defect, len(DEFECT_KINDS))) for i, k in enumerate(DEFECT_KINDS)}


def _expected_counts(settings: dict) -> dict[str, int]:
    counts = {"train/good": settings["n_train"], "test/good": settings["n_test_good"]}
    for kind, n in _defect_counts(settings["n_test_defect"]).items():
        counts[f"test/{kind}"] = counts[f"ground_truth/{kind}"] = n
    return counts


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def write_texture_set(dest: Path, settings: dict) -> None:
    """Write one category's files into ``dest`` (an empty folder) from ``settings``."""
    category, size = settings["category"], settings["crop_size"]
    normal_region, test_region = _regions(texture_photo(category))
    others = [texture_photo(c) for c in TEXTURE_CATEGORIES if c != category]
    train_ss, test_ss, defect_ss = np.random.SeedSequence([settings["seed"], zlib.crc32(category.encode())]).spawn(3)

    rng = np.random.default_rng(train_ss)
    for i in range(settings["n_train"]):
        _save_png(_crop(normal_region, size, rng), dest / "train" / "good" / f"{i:03d}.png")
    rng = np.random.default_rng(test_ss)
    for i in range(settings["n_test_good"]):
        _save_png(_crop(test_region, size, rng), dest / "test" / "good" / f"{i:03d}.png")
    rng = np.random.default_rng(defect_ss)
    numbers = dict.fromkeys(DEFECT_KINDS, 0)
    for i in range(settings["n_test_defect"]):
        kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
        clean = _crop(test_region, size, rng)
        source = others[int(rng.integers(len(others)))]
        image, mask = apply_defect(kind, clean, rng, source=source)
        stem = f"{numbers[kind]:03d}"
        numbers[kind] += 1
        _save_png(image, dest / "test" / kind / f"{stem}.png")
        _save_png(mask.astype(np.uint8) * 255, dest / "ground_truth" / kind / f"{stem}_mask.png")
    manifest = {**settings, "counts": _expected_counts(settings)}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _is_complete(folder: Path, settings: dict) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if {k: manifest.get(k) for k in settings} != settings:
        return False
    counts = _expected_counts(settings)
    return all(len(list((folder / sub).glob("*.png"))) == n for sub, n in counts.items())


def ensure_texture_set(
    root: str | Path, category: str, seed: int, crop_size: int = 192,
    n_train: int = 100, n_test_good: int = 30, n_test_defect: int = 30,
) -> Path:  # fmt: skip
    """``<root>/textures/<category>``, generated unless an identical set is already there."""
    if category not in TEXTURE_CATEGORIES:
        raise UserError(f"unknown texture category '{category}'; choose category=brick, grass or gravel")
    settings = _settings(category, seed, crop_size, n_train, n_test_good, n_test_defect)
    final = Path(root).expanduser() / "textures" / category
    if _is_complete(final, settings):
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{category}.tmp-", dir=final.parent))
    except OSError as err:
        raise UserError(
            f"cannot write the texture data to {final.parent} ({err.strerror}); set paths.data_dir to a writable folder"
        ) from err
    try:
        write_texture_set(tmp, settings)
        if final.exists():  # stale set: move it aside, then swap the new one in
            old = Path(tempfile.mkdtemp(prefix=f".{category}.old-", dir=final.parent))
            os.replace(final, old / category)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except OSError:
        if not _is_complete(final, settings):  # another process may have just put the same set there
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


class TexturesDataModule(MVTecDataModule):
    """Generates ``<root>/textures/<category>`` (brick, grass or gravel) then reads it as MVTec.

    ``crop_size`` is the native size of the written images (at most 205, the height of the test
    region); ``n_train`` counts the normal training images before the validation hold-out.
    """

    def __init__(
        self,
        root: str,
        category: str,
        image_size: int = 256,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_split: float = 0.2,
        seed: int = 0,
        cache: str = "ram",
        cache_dir: str | None = None,
        n_train: int = 100,
        n_test_good: int = 30,
        n_test_defect: int = 30,
        crop_size: int = 192,
        mask_resize: str = "nearest",
    ):
        if root is None or str(root).strip() == "":
            raise UserError("no data folder given; set paths.data_dir=<folder> (or env ANOMALY_KD_DATA_DIR)")
        category = str(category)
        if category not in TEXTURE_CATEGORIES:
            raise UserError(f"unknown texture category '{category}'; choose category=brick, grass or gravel")
        super().__init__(
            str(Path(root) / "textures"), category, image_size, batch_size, eval_batch_size, num_workers, val_split, seed,
            mask_resize=mask_resize, cache=cache, cache_dir=cache_dir,
        )
        self.data_root = str(root)
        self.n_train = check_int("n_train", n_train, 1)
        self.n_test_good = check_int("n_test_good", n_test_good, 0)
        self.n_test_defect = check_int("n_test_defect", n_test_defect, 0)
        self.crop_size = check_int("crop_size", crop_size, 16)
        if self.crop_size > MAX_CROP:
            raise UserError(
                f"data.crop_size must be <= {MAX_CROP} (the height of the photo's test region), got {crop_size}; "
                "lower data.crop_size"
            )

    def prepare_data(self) -> None:
        ensure_texture_set(
            self.data_root, self.category, self.seed, self.crop_size,
            self.n_train, self.n_test_good, self.n_test_defect,
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.prepare_data()  # no-op when prepare_data already made the set
        super().setup(stage)
