"""Miniatures of each published data set, in exactly its publisher's layout (names, extensions,
mask conventions, split file), with tiny structured images and exact planted defects.

Every writer returns the folder to pass as ``root`` (``paths.data_dir``). Same arguments, same files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from anomaly_kd.data.defects import apply_defect
from anomaly_kd.data.synthetic import make_synthetic_mvtec, widget_image

SIZE = 32


class _Painter:
    def __init__(self, seed: int, size: int = SIZE):
        self.rng = np.random.default_rng(seed)
        self.base = self.rng.uniform(120, 220, 3)
        self.size = size

    def good(self) -> np.ndarray:
        return widget_image(self.size, self.rng, self.base)

    def bad(self) -> tuple[np.ndarray, np.ndarray]:
        return apply_defect("scratch", self.good(), self.rng)


def save(array: np.ndarray, path: Path, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def mask_image(mask: np.ndarray, value: int = 255) -> np.ndarray:
    return (mask.astype(np.uint8) * value).astype(np.uint8)


def write_folder(root: Path, n_normal: int = 6, mask_suffix: str = "_mask", with_masks: bool = True) -> Path:
    """``normal/``, ``abnormal/`` (one image directly, two in ``abnormal/scratch/``), ``masks/`` mirroring it."""
    paint = _Painter(1)
    for i in range(n_normal):
        save(paint.good(), root / "normal" / f"good_{i:02d}.png")
    for rel in ("loose.png", "scratch/s0.png", "scratch/s1.png"):
        image, mask = paint.bad()
        save(image, root / "abnormal" / rel)
        if with_masks:
            path = Path(rel)
            save(mask_image(mask), root / "masks" / path.parent / f"{path.stem}{mask_suffix}.png")
    return root


def write_visa(root: Path, category: str = "candle") -> Path:
    """``<category>/Data/Images/{Normal,Anomaly}/NNN.JPG``, ``Data/Masks/Anomaly/NNN.png`` (instance
    values 1 and 2), ``split_csv/1cls.csv``: 5 normals train, 2 normals + 2 anomalies test."""
    paint = _Painter(2)
    data = root / category / "Data"
    rows = []
    for i in range(7):
        rel = f"{category}/Data/Images/Normal/{i:04d}.JPG"
        save(paint.good(), root / rel, "JPEG")
        rows.append([category, "train" if i < 5 else "test", "normal", rel, ""])
    for i in range(2):
        image, mask = paint.bad()
        rel = f"{category}/Data/Images/Anomaly/{i:03d}.JPG"
        save(image, root / rel, "JPEG")
        instances = mask_image(mask, 1)
        instances[::2][mask[::2]] = 2  # a second instance id on every other row: still defective
        save(instances, data / "Masks" / "Anomaly" / f"{i:03d}.png")
        rows.append([category, "test", "anomaly", rel, f"{category}/Data/Masks/Anomaly/{i:03d}.png"])
    split = root / "split_csv" / "1cls.csv"
    split.parent.mkdir(parents=True, exist_ok=True)
    with open(split, "a" if split.exists() else "w", newline="") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    return root


def write_mvtec3d(root: Path, category: str = "bagel") -> Path:
    """``<category>/{train,validation}/good/{rgb,xyz}``, ``test/{good,crack}/{rgb,gt,xyz}`` (xyz: float
    TIFF point clouds, to be ignored); 5 train, 2 validation, 2 + 2 test."""
    paint = _Painter(3)
    folder = root / category

    def xyz(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((SIZE, SIZE), np.float32)).save(path, format="TIFF")

    for split, n in (("train", 5), ("validation", 2)):
        for i in range(n):
            save(paint.good(), folder / split / "good" / "rgb" / f"{i:03d}.png")
            xyz(folder / split / "good" / "xyz" / f"{i:03d}.tiff")
    for i in range(2):
        save(paint.good(), folder / "test" / "good" / "rgb" / f"{i:03d}.png")
        save(np.zeros((SIZE, SIZE), np.uint8), folder / "test" / "good" / "gt" / f"{i:03d}.png")
        xyz(folder / "test" / "good" / "xyz" / f"{i:03d}.tiff")
        image, mask = paint.bad()
        save(image, folder / "test" / "crack" / "rgb" / f"{i:03d}.png")
        save(mask_image(mask), folder / "test" / "crack" / "gt" / f"{i:03d}.png")
        xyz(folder / "test" / "crack" / "xyz" / f"{i:03d}.tiff")
    return root


def write_mvtec_ad2(root: Path, category: str = "can") -> Path:
    """``<category>/{train/good, validation/good, test_public/{good,bad}, test_public/ground_truth/bad}``
    with AD 2's names (``NNN_regular.png``, masks ``NNN_regular_mask.png``); 5 train, 2 val, 2 + 2 test."""
    paint = _Painter(4)
    folder = root / category
    for split, n in (("train", 5), ("validation", 2)):
        for i in range(n):
            save(paint.good(), folder / split / "good" / f"{i:03d}_regular.png")
    for i in range(2):
        save(paint.good(), folder / "test_public" / "good" / f"{i:03d}_regular.png")
        image, mask = paint.bad()
        save(image, folder / "test_public" / "bad" / f"{i:03d}_regular.png")
        save(mask_image(mask), folder / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png")
    return root


def write_btad(root: Path, product: str = "01", ext: str = ".bmp", mask_ext: str = ".png") -> Path:
    """``<product>/{train/ok, test/ok, test/ko, ground_truth/ko}``, images ``NNNN<ext>``, masks named
    like their image with ``mask_ext``; 6 train, 2 + 2 test."""
    paint = _Painter(5)
    folder = root / product
    for i in range(6):
        save(paint.good(), folder / "train" / "ok" / f"{i:04d}{ext}")
    for i in range(2):
        save(paint.good(), folder / "test" / "ok" / f"{i:04d}{ext}")
        image, mask = paint.bad()
        save(image, folder / "test" / "ko" / f"{i:04d}{ext}")
        save(mask_image(mask), folder / "ground_truth" / "ko" / f"{i:04d}{mask_ext}")
    return root


def write_mpdd(root: Path, category: str = "bracket_black") -> Path:
    """MPDD is in the MVTec AD layout."""
    return make_synthetic_mvtec(root, category, n_train=6, n_test_good=2, n_test_defect=2, size=SIZE)


#: defects_config.json of the miniature: one absolute, one relative saturation
LOCO_DEFECTS = [
    {"defect_name": "missing_part", "pixel_value": 255, "saturation_threshold": 20, "relative_saturation": False},
    {"defect_name": "scratch", "pixel_value": 37, "saturation_threshold": 0.5, "relative_saturation": True},
]


def write_mvtec_loco(root: Path, category: str = "breakfast_box") -> Path:
    """``<category>/{train/good, validation/good, test/{good,logical_anomalies,structural_anomalies},
    ground_truth/<type>/<NNN>/<kkk>.png, defects_config.json}``: 5 train, 2 val, 2 good test, 2 of each
    anomaly type; logical image 000 has two defect masks (values 255 and 37)."""
    paint = _Painter(6)
    folder = root / category
    for split, n in (("train", 5), ("validation", 2)):
        for i in range(n):
            save(paint.good(), folder / split / "good" / f"{i:03d}.png")
    for i in range(2):
        save(paint.good(), folder / "test" / "good" / f"{i:03d}.png")
    for kind in ("logical_anomalies", "structural_anomalies"):
        for i in range(2):
            image, mask = paint.bad()
            save(image, folder / "test" / kind / f"{i:03d}.png")
            value = 255 if kind == "logical_anomalies" else 37
            save(mask_image(mask, value), folder / "ground_truth" / kind / f"{i:03d}" / "000.png")
            if kind == "logical_anomalies" and i == 0:
                second = np.zeros_like(mask)
                second[2:6, 2:8] = True
                save(mask_image(second, 37), folder / "ground_truth" / kind / f"{i:03d}" / "001.png")
    (folder / "defects_config.json").write_text(json.dumps(LOCO_DEFECTS, indent=2))
    return root


# ---------------------------------------------------------------- running them
def run_end_to_end(data: str, root: Path, category: str, out: Path, *overrides: str) -> dict:
    """One tiny STFPM job through the Hydra config tree and ``pipeline.run``; its results.json."""
    from anomaly_kd.pipeline import run
    from tests.helpers import FAST, compose_config

    cfg = compose_config([f"data={data}", f"category={category}", f"paths.data_dir={root}", "model=stfpm",
                          "model.pretrained=false", *FAST, "data.image_size=32", *overrides], out)
    run(cfg)
    return json.loads((out / "results.json").read_text())


def setup_error(module_cls, root: Path, category: str, **kwargs) -> str:
    """The one-line UserError of ``module_cls(...).setup()``."""
    import pytest

    from anomaly_kd.errors import UserError

    with pytest.raises(UserError) as err:
        module_cls(root=str(root), category=category, image_size=16, **kwargs).setup("fit")
    message = str(err.value)
    assert "\n" not in message
    return message


def datamodule(module_cls, root: Path, category: str, **kwargs):
    kwargs = {"image_size": 16, "batch_size": 4, **kwargs}
    dm = module_cls(root=str(root), category=category, **kwargs)
    dm.setup("fit")
    return dm
