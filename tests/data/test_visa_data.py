"""data=visa: the release layout read through split_csv/1cls.csv; instance masks; errors; end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from anomaly_kd.data.visa import VISA_CATEGORIES, VisADataModule
from tests.data.layouts import datamodule, run_end_to_end, setup_error, write_visa


def test_split_file_gives_train_and_test(tmp_path):
    root = write_visa(write_visa(tmp_path / "visa", "candle"), "pcb1")  # one split file, two objects
    dm = datamodule(VisADataModule, root, "candle", val_split=0.2)
    train = sorted(Path(s.path).name for s in [*dm.train_set.samples, *dm.val_set.samples])
    assert train == [f"{i:04d}.JPG" for i in range(5)] and len(dm.val_set) == 1
    test = dm.test_set.samples
    assert [(Path(s.path).name, s.label, s.defect) for s in test] == [
        ("0005.JPG", 0, "good"), ("0006.JPG", 0, "good"), ("000.JPG", 1, "anomaly"), ("001.JPG", 1, "anomaly")]
    assert all("/candle/" in s.path for s in test)
    assert Path(test[2].mask_path).relative_to(root).as_posix() == "candle/Data/Masks/Anomaly/000.png"


def test_instance_valued_masks_are_defective_wherever_non_zero(tmp_path):
    root = write_visa(tmp_path / "visa")
    dm = datamodule(VisADataModule, root, "candle", image_size=32)
    item = dm.test_set[2]
    from PIL import Image

    raw = np.asarray(Image.open(dm.test_set.samples[2].mask_path))
    assert set(np.unique(raw).tolist()) == {0, 1, 2}
    assert np.array_equal(item["mask"][0].numpy(), (raw > 0).astype(np.uint8))


def rewrite_split(root: Path, change) -> None:
    path = root / "split_csv" / "1cls.csv"
    rows = list(csv.reader(open(path)))
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(change(rows))


@pytest.mark.parametrize("break_it, expected", [
    (lambda r: (r / "candle/Data/Masks/Anomaly/001.png").unlink(), "Anomaly/001.JPG has no mask"),
    (lambda r: (r / "candle/Data/Masks/Anomaly/001.png").rename(r / "candle/Data/Masks/Anomaly/009.png"),
     "Anomaly/001.JPG has no mask"),
    (lambda r: rewrite_split(r, lambda rows: [x for x in rows if not x[3].endswith("Anomaly/001.JPG")]),
     "Masks/Anomaly/001.png has no test image"),
    (lambda r: (r / "candle/Data/Images/Normal/0006.JPG").unlink(), "Normal/0006.JPG listed in"),
    (lambda r: (r / "split_csv/1cls.csv").unlink(), "split_csv/1cls.csv not found"),
    (lambda r: rewrite_split(r, lambda rows: [["object", "split", "image"]] + rows[1:]),
     "has no column(s) label, mask"),
])
def test_mismatch_errors(tmp_path, break_it, expected):
    root = write_visa(tmp_path / "visa")
    break_it(root)
    assert expected in setup_error(VisADataModule, root, "candle")


def test_unknown_category_lists_the_official_names(tmp_path):
    root = write_visa(tmp_path / "visa")
    message = setup_error(VisADataModule, root, "candel")
    assert "categories there: candle" in message and ", ".join(VISA_CATEGORIES) in message
    assert len(VISA_CATEGORIES) == 12
    (root / "mine" / "Data").mkdir(parents=True)  # any other folder name is accepted if the split file lists it
    assert "has no row for object 'mine'" in setup_error(VisADataModule, root, "mine")


def test_end_to_end_through_hydra(tmp_path):
    root = write_visa(tmp_path / "visa")
    results = run_end_to_end("visa", root, "candle", tmp_path / "out")
    assert results["data"] == "visa" and results["metrics"]["n_images"] == 4
    assert results["metrics"]["n_anomalous"] == 2 and results["metrics"]["aupro"] is not None
