"""data=mvtec3d: RGB of MVTec 3D-AD, its own validation set (or merged), errors, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anomaly_kd.data.mvtec3d import MVTEC3D_CATEGORIES, MVTec3DDataModule
from tests.data.layouts import datamodule, run_end_to_end, setup_error, write_mvtec3d


def rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def test_rgb_indexed_xyz_ignored_validation_is_its_own(tmp_path):
    root = write_mvtec3d(tmp_path / "m3d")
    dm = datamodule(MVTec3DDataModule, root, "bagel")
    assert [rel(root, s.path) for s in dm.train_set.samples] == [f"bagel/train/good/rgb/{i:03d}.png" for i in range(5)]
    assert [rel(root, s.path) for s in dm.val_set.samples] == [f"bagel/validation/good/rgb/{i:03d}.png" for i in range(2)]
    assert [(rel(root, s.path), s.label, s.defect, s.mask_path and rel(root, s.mask_path)) for s in dm.test_set.samples] == [
        ("bagel/test/crack/rgb/000.png", 1, "crack", "bagel/test/crack/gt/000.png"),
        ("bagel/test/crack/rgb/001.png", 1, "crack", "bagel/test/crack/gt/001.png"),
        ("bagel/test/good/rgb/000.png", 0, "good", ""),
        ("bagel/test/good/rgb/001.png", 0, "good", ""),
    ]


def test_merge_validation_holds_out_val_split_instead(tmp_path):
    root = write_mvtec3d(tmp_path / "m3d")
    dm = datamodule(MVTec3DDataModule, root, "bagel", merge_validation=True, val_split=0.25)
    together = sorted(rel(root, s.path) for s in [*dm.train_set.samples, *dm.val_set.samples])
    assert len(together) == 7 and len(dm.val_set) == 2  # ceil(7 * 0.25)
    assert sum("validation" in p for p in together) == 2


@pytest.mark.parametrize("break_it, expected", [
    (lambda r: (r / "bagel/test/crack/gt/001.png").unlink(), "crack/rgb/001.png has no mask; expected"),
    (lambda r: shutil.copy(r / "bagel/test/crack/gt/001.png", r / "bagel/test/crack/gt/007.png"),
     "crack/gt/007.png has no test image"),
    (lambda r: shutil.rmtree(r / "bagel/validation"), "validation/good/rgb is missing"),
    (lambda r: [p.unlink() for p in (r / "bagel/train/good/rgb").iterdir()], "train/good/rgb has no images"),
])
def test_mismatch_errors(tmp_path, break_it, expected):
    root = write_mvtec3d(tmp_path / "m3d")
    break_it(root)
    assert expected in setup_error(MVTec3DDataModule, root, "bagel")


def test_unknown_category_lists_the_official_names(tmp_path):
    root = write_mvtec3d(tmp_path / "m3d")
    message = setup_error(MVTec3DDataModule, root, "bagle")
    assert "categories there: bagel" in message and ", ".join(MVTEC3D_CATEGORIES) in message
    assert len(MVTEC3D_CATEGORIES) == 10
    shutil.copytree(root / "bagel", root / "my_part")  # any other folder name in the layout works
    assert len(datamodule(MVTec3DDataModule, root, "my_part").test_set) == 4


def test_end_to_end_through_hydra(tmp_path):
    root = write_mvtec3d(tmp_path / "m3d")
    results = run_end_to_end("mvtec3d", root, "bagel", tmp_path / "out")
    assert results["data"] == "mvtec3d" and results["metrics"]["n_images"] == 4
    assert results["metrics"]["n_anomalous"] == 2 and results["metrics"]["aupro"] is not None
