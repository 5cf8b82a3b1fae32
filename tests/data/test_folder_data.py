"""data=folder: normal/abnormal folders, optional masks and normal test folder, errors, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anomaly_kd.data.folder import FolderDataModule, held_out
from tests.data.layouts import datamodule, run_end_to_end, setup_error, write_folder

MASKED = {"mask_dir": "masks", "mask_suffix": "_mask"}
NORMALS = [f"good_{i:02d}.png" for i in range(6)]


def names(samples) -> list[str]:
    return [Path(s.path).name for s in samples]


def test_indexing_with_masks_and_held_out_normals(tmp_path):
    root = write_folder(tmp_path / "f")
    dm = datamodule(FolderDataModule, root, "parts", **MASKED, test_split=0.34, val_split=0.25)
    kept, out = held_out(6, 0.34, 0)
    assert len(out) == 3 and sorted(kept + out) == list(range(6))  # ceil(6 * 0.34) held out for test
    test = dm.test_set.samples
    assert names(test) == [NORMALS[i] for i in out] + ["loose.png", "s0.png", "s1.png"]
    assert [(s.label, s.defect) for s in test] == [(0, "good")] * 3 + [(1, "anomaly"), (1, "scratch"), (1, "scratch")]
    assert [Path(s.mask_path).relative_to(root).as_posix() for s in test[3:]] == [
        "masks/loose_mask.png", "masks/scratch/s0_mask.png", "masks/scratch/s1_mask.png"]
    train_and_val = sorted(names(dm.train_set.samples) + names(dm.val_set.samples))
    assert train_and_val == sorted(NORMALS[i] for i in kept) and len(dm.val_set) == 1  # ceil(3 * 0.25)
    assert dm.has_masks


def test_normal_test_dir_and_no_masks(tmp_path):
    root = write_folder(tmp_path / "f", with_masks=False)
    shutil.copytree(root / "normal", root / "normal_test")
    dm = datamodule(FolderDataModule, root, "parts", normal_test_dir=str(root / "normal_test"), val_split=0.0)
    assert not dm.has_masks and not dm.test_set.has_masks  # the pipeline gives the model has_masks: pixel metrics null
    assert names(dm.train_set.samples) == NORMALS
    assert [Path(s.path).parent.name for s in dm.test_set.samples[:6]] == ["normal_test"] * 6
    assert all(s.mask_path == "" for s in dm.test_set.samples)


@pytest.mark.parametrize("break_it, expected", [
    (lambda r: (r / "masks" / "scratch" / "s1_mask.png").unlink(), "abnormal/scratch/s1.png has no mask; expected"),
    (lambda r: shutil.copy(r / "masks" / "loose_mask.png", r / "masks" / "extra_mask.png"),
     "masks/extra_mask.png has no test image (expected"),
    (lambda r: shutil.copy(r / "masks" / "loose_mask.png", r / "masks" / "loose.png"),
     "masks/loose.png is not named <image name>_mask.<ext>"),
    (lambda r: shutil.rmtree(r / "abnormal"), "data.abnormal_dir: folder"),
    (lambda r: [p.unlink() for p in (r / "normal").iterdir()], "normal has no images; it must hold the normal images"),
])
def test_mismatch_errors(tmp_path, break_it, expected):
    root = write_folder(tmp_path / "f")
    break_it(root)
    assert expected in setup_error(FolderDataModule, root, "parts", **MASKED)


def test_end_to_end_through_hydra(tmp_path):
    root = write_folder(tmp_path / "f")
    results = run_end_to_end("folder", root, "parts", tmp_path / "out", "data.mask_dir=masks", "data.mask_suffix=_mask")
    metrics = results["metrics"]
    assert results["data"] == "folder" and results["category"] == "parts"
    assert metrics["n_images"] == 2 + 3 and metrics["n_anomalous"] == 3  # ceil(6 * 0.2) normals held out
    assert metrics["pixel_auroc"] is not None and metrics["aupro"] is not None

