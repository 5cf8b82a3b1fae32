"""data=btad (ok/ko folders, .bmp or .png, masks named like their image) and data=mpdd (MVTec layout)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anomaly_kd.data.btad import BTAD_CATEGORIES, BTADDataModule
from anomaly_kd.data.mvtec import MVTecDataModule
from tests.data.layouts import datamodule, run_end_to_end, setup_error, write_btad, write_mpdd
from tests.helpers import compose_config

MPDD_CATEGORIES = ["bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes"]


@pytest.mark.parametrize("ext, mask_ext", [(".bmp", ".png"), (".png", ".png"), (".bmp", ".bmp")])
def test_btad_pairs_masks_by_name_whatever_the_extension(tmp_path, ext, mask_ext):
    root = write_btad(tmp_path / "btad", "01", ext, mask_ext)
    dm = datamodule(BTADDataModule, root, "1", val_split=0.0)  # 1, as a command line may give 01
    assert dm.category == "01" and len(dm.train_set) == 6
    assert [(Path(s.path).name, s.label, s.defect, Path(s.mask_path).name if s.mask_path else "")
            for s in dm.test_set.samples] == [
        (f"0000{ext}", 0, "good", ""), (f"0001{ext}", 0, "good", ""),
        (f"0000{ext}", 1, "ko", f"0000{mask_ext}"), (f"0001{ext}", 1, "ko", f"0001{mask_ext}")]


@pytest.mark.parametrize("break_it, expected", [
    (lambda r: (r / "01/ground_truth/ko/0001.png").unlink(), "test/ko/0001.bmp has no mask"),
    (lambda r: shutil.copy(r / "01/ground_truth/ko/0001.png", r / "01/ground_truth/ko/0009.png"),
     "ground_truth/ko/0009.png has no test image"),
    (lambda r: shutil.copy(r / "01/ground_truth/ko/0001.png", r / "01/ground_truth/ko/0001.bmp"),
     "two masks for image 0001"),
    (lambda r: shutil.rmtree(r / "01/test/ok"), "test/ok is missing"),
])
def test_btad_mismatch_errors(tmp_path, break_it, expected):
    root = write_btad(tmp_path / "btad")
    break_it(root)
    assert expected in setup_error(BTADDataModule, root, "01")


def test_unknown_categories_list_the_official_names(tmp_path):
    root = write_btad(tmp_path / "btad")
    message = setup_error(BTADDataModule, root, "04")
    assert "categories there: 01" in message and "official BTAD categories: 01, 02, 03" in message
    assert BTAD_CATEGORIES == ("01", "02", "03")
    mpdd = write_mpdd(tmp_path / "mpdd")
    cfg = compose_config(["data=mpdd", f"paths.data_dir={mpdd}"], tmp_path / "o")
    assert list(cfg.data.official_categories) == MPDD_CATEGORIES
    message = setup_error(MVTecDataModule, mpdd, "bracket", official_categories=MPDD_CATEGORIES, title="MPDD")
    assert "categories there: bracket_black" in message and f"official MPDD categories: {', '.join(MPDD_CATEGORIES)}" in message


def test_btad_end_to_end_through_hydra(tmp_path):
    root = write_btad(tmp_path / "btad")
    results = run_end_to_end("btad", root, "01", tmp_path / "out")
    assert results["data"] == "btad" and results["metrics"]["n_images"] == 4
    assert results["metrics"]["n_anomalous"] == 2 and results["metrics"]["aupro"] is not None


def test_mpdd_end_to_end_through_hydra(tmp_path):
    root = write_mpdd(tmp_path / "mpdd")
    results = run_end_to_end("mpdd", root, "bracket_black", tmp_path / "out")
    assert results["data"] == "mpdd" and results["category"] == "bracket_black"
    assert results["metrics"]["n_images"] == 4 and results["metrics"]["n_anomalous"] == 2
