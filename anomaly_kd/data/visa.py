"""VisA (Zou et al., ECCV 2022) in its release layout, split by the official split file.

Layout (``root`` = the extracted release folder)::

    <root>/split_csv/1cls.csv                          object,split,label,image,mask
    <root>/<category>/Data/Images/Normal/*.JPG
    <root>/<category>/Data/Images/Anomaly/*.JPG
    <root>/<category>/Data/Masks/Anomaly/*.png         same stem as the image

The split file's rows of ``object == category`` give the train (normal only) and test images;
``label`` is ``normal`` or ``anomaly``; ``image``/``mask`` are paths relative to ``root``. Masks
hold instance values: any non-zero pixel is defective. Another split file can be named with
``split_file`` (relative to ``root``). Any category folder name present in the split file works.
"""

from __future__ import annotations

import csv
from pathlib import Path

from anomaly_kd.data.images import list_images
from anomaly_kd.data.indexed import IndexedDataModule, orphan_mask
from anomaly_kd.data.mvtec import GOOD, Sample, category_dir
from anomaly_kd.errors import UserError

VISA_CATEGORIES = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1",
    "macaroni2", "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)  # fmt: skip
SPLIT_COLUMNS = ("object", "split", "label", "image", "mask")
ANOMALY = "anomaly"


def read_split(path: Path) -> list[dict[str, str]]:
    """The rows of a VisA split file, checked for its columns."""
    if not path.is_file():
        raise UserError(f"VisA split file {path} not found; it comes with the release (split_csv/1cls.csv): point "
                        "paths.data_dir at the extracted VisA folder or set data.split_file")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"VisA split file {path} has no column(s) {', '.join(missing)}; its header must be "
                            f"{','.join(SPLIT_COLUMNS)}")
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


class VisADataModule(IndexedDataModule):
    title = "VisA"
    official_categories = VISA_CATEGORIES

    def __init__(self, *args, split_file: str = "split_csv/1cls.csv", **kwargs):
        super().__init__(*args, **kwargs)
        self.split_file = split_file

    def index(self):
        folder = category_dir(self.root, self.category, VISA_CATEGORIES, self.title, marker="Data")
        root = Path(self.root).expanduser()
        split_path = Path(self.split_file).expanduser()
        split_path = split_path if split_path.is_absolute() else root / split_path
        rows = [r for r in read_split(split_path) if r["object"] == self.category]
        if not rows:
            raise UserError(f"VisA split file {split_path} has no row for object '{self.category}'; use a category "
                            "it lists, or a split file that lists this one (data.split_file)")
        train, test, used_masks = [], [], set()
        for row in rows:
            image = root / row["image"]
            if not image.is_file():
                raise UserError(f"image {image} listed in {split_path} does not exist; extract the full VisA "
                                "release or fix the split file")
            if row["label"] not in ("normal", ANOMALY) or row["split"] not in ("train", "test"):
                raise UserError(f"{split_path}: row of {row['image']} has split={row['split']!r}, label="
                                f"{row['label']!r}; split must be train/test and label normal/anomaly")
            if row["label"] == "normal":
                sample = Sample(str(image), 0, GOOD)
            else:
                mask = root / row["mask"] if row["mask"] else None
                if mask is None or not mask.is_file():
                    raise UserError(f"anomalous image {image} has no mask (split file gives {row['mask'] or 'none'}); "
                                    f"expected {folder / 'Data' / 'Masks' / 'Anomaly' / image.stem}.png")
                used_masks.add(mask.resolve())
                sample = Sample(str(image), 1, ANOMALY, str(mask))
            if row["split"] == "train" and sample.label:
                raise UserError(f"{split_path} puts the anomalous image {image} in the training split; "
                                "training images must be normal")
            (train if row["split"] == "train" else test).append(sample)
        for mask in list_images(folder / "Data" / "Masks" / "Anomaly"):
            if mask.resolve() not in used_masks:
                raise orphan_mask(mask, folder / "Data" / "Images" / "Anomaly" / mask.stem)
        if not train or not test:
            raise UserError(f"{split_path} lists no {'train' if not train else 'test'} image for '{self.category}'; "
                            "use the official split file")
        return train, None, test
