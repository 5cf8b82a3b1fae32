"""data=mvtec_ad2: the public test set of MVTec AD 2, errors, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anomaly_kd.data.mvtec_ad2 import MVTEC_AD2_CATEGORIES, MVTecAD2DataModule
from tests.data.layouts import datamodule, run_end_to_end, setup_error, write_mvtec_ad2


def rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def test_layout_is_indexed_and_paired(tmp_path):
    root = write_mvtec_ad2(tmp_path / "ad2")
    (root / "can" / "test_private" / "000_regular.png").parent.mkdir(parents=True)  # unlabeled: never read
    shutil.copy(root / "can/train/good/000_regular.png", root / "can/test_private/000_regular.png")
    dm = datamodule(MVTecAD2DataModule, root, "can")
    assert len(dm.train_set) == 5 and [rel(root, s.path) for s in dm.val_set.samples] == [
        "can/validation/good/000_regular.png", "can/validation/good/001_regular.png"]
    assert [(rel(root, s.path), s.label, s.mask_path and rel(root, s.mask_path)) for s in dm.test_set.samples] == [
        ("can/test_public/good/000_regular.png", 0, ""),
        ("can/test_public/good/001_regular.png", 0, ""),
        ("can/test_public/bad/000_regular.png", 1, "can/test_public/ground_truth/bad/000_regular_mask.png"),
        ("can/test_public/bad/001_regular.png", 1, "can/test_public/ground_truth/bad/001_regular_mask.png"),
    ]
    merged = datamodule(MVTecAD2DataModule, root, "can", merge_validation=True, val_split=0.2)
    assert len(merged.train_set) + len(merged.val_set) == 7 and len(merged.val_set) == 2


@pytest.mark.parametrize("break_it, expected", [
    (lambda r: (r / "can/test_public/ground_truth/bad/001_regular_mask.png").unlink(), "bad/001_regular.png has no mask"),
    (lambda r: shutil.copy(r / "can/test_public/ground_truth/bad/001_regular_mask.png",
                           r / "can/test_public/ground_truth/bad/005_regular_mask.png"), "005_regular_mask.png has no test image"),
    (lambda r: shutil.copy(r / "can/test_public/ground_truth/bad/001_regular_mask.png",
                           r / "can/test_public/ground_truth/bad/005_regular.png"), "is not named <image name>_mask.<ext>"),
    (lambda r: shutil.rmtree(r / "can/test_public/good"), "test_public/good is missing"),
])
def test_mismatch_errors(tmp_path, break_it, expected):
    root = write_mvtec_ad2(tmp_path / "ad2")
    break_it(root)
    assert expected in setup_error(MVTecAD2DataModule, root, "can")


def test_unknown_category_lists_the_official_names(tmp_path):
    root = write_mvtec_ad2(tmp_path / "ad2")
    message = setup_error(MVTecAD2DataModule, root, "walnut")
    assert "categories there: can" in message and ", ".join(MVTEC_AD2_CATEGORIES) in message
    assert len(MVTEC_AD2_CATEGORIES) == 8


def test_end_to_end_through_hydra(tmp_path):
    root = write_mvtec_ad2(tmp_path / "ad2")
    results = run_end_to_end("mvtec_ad2", root, "can", tmp_path / "out")
    assert results["data"] == "mvtec_ad2" and results["metrics"]["n_images"] == 4
    assert results["metrics"]["n_anomalous"] == 2 and results["metrics"]["aupro"] is not None
