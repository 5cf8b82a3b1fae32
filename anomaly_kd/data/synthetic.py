"""A tiny MVTec-layout folder with structured images and planted defects, for tests and demos.

>>> root = make_synthetic_mvtec(tmp_path / "mvtec")          # doctest: +SKIP
>>> MVTecDataModule(root=str(root), category="widget", image_size=64)  # doctest: +SKIP

Tests can break the folder afterwards (delete a mask, truncate an image, ...) to check errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from anomaly_kd.data.defects import DEFECT_KINDS, apply_defect

MODES = ("RGB", "L", "RGBA", "I;16")


def widget_image(size: int, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """uint8 [size, size, 3]: a colour-graded plate with a regular grid of dots, slightly jittered."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period = size / 6
    dy, dx = rng.uniform(-1.5, 1.5, 2)
    dots = ((yy + dy) % period - period / 2) ** 2 + ((xx + dx) % period - period / 2) ** 2 < (period / 4) ** 2
    shade = 0.85 + 0.15 * yy / size + rng.uniform(-0.03, 0.03)
    image = base[None, None, :] * shade[:, :, None]
    image[dots] *= 0.55
    image += rng.normal(0, 3, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _save(rgb: np.ndarray, path: Path, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        im = Image.fromarray(rgb)
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]))
    else:
        grey = np.rint(rgb.astype(np.float64).mean(axis=2))
        im = Image.fromarray(grey.astype(np.uint8)) if mode == "L" else Image.fromarray((grey * 257).astype(np.uint16))
    im.save(path, format="PNG")


def make_synthetic_mvtec(
    root: str | Path,
    category: str = "widget",
    n_train: int = 8,
    n_test_good: int = 3,
    n_test_defect: int = 3,
    size: int = 64,
    defects: tuple[str, ...] = ("scratch",),
    seed: int = 0,
    mode: str = "RGB",
) -> Path:
    """Write ``<root>/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}`` and
    return ``root`` (the folder to pass as the datamodule's ``root``).

    Defective images cycle through ``defects`` (any of patch, scratch, stain, hole); masks are
    exact, 0/255, named ``<stem>_mask.png``. ``mode`` is the PNG mode written for the images
    (RGB, L, RGBA or 16-bit I;16). Same arguments give the same files.
    """
    unknown = [d for d in defects if d not in DEFECT_KINDS]
    if unknown or mode not in MODES or (n_test_defect and not defects):
        raise ValueError(f"defects must be among {DEFECT_KINDS} and mode among {MODES}; got {defects}, {mode}")
    root = Path(root)
    folder = root / category
    rng = np.random.default_rng(seed)
    base = rng.uniform(120, 220, 3)
    for i in range(n_train):
        _save(widget_image(size, rng, base), folder / "train" / "good" / f"{i:03d}.png", mode)
    for i in range(n_test_good):
        _save(widget_image(size, rng, base), folder / "test" / "good" / f"{i:03d}.png", mode)
    numbers = dict.fromkeys(defects, 0)
    for i in range(n_test_defect):
        kind = defects[i % len(defects)]
        source = rng.integers(0, 256, (size, size), dtype=np.uint8)  # noise texture for "patch"
        image, mask = apply_defect(kind, widget_image(size, rng, base), rng, source=source)
        stem = f"{numbers[kind]:03d}"
        numbers[kind] += 1
        _save(image, folder / "test" / kind / f"{stem}.png", mode)
        mask_path = folder / "ground_truth" / kind / f"{stem}_mask.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, format="PNG")
    return root
