"""Embedded texture data: photos offline, deterministic generation, manifest reuse, exact masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import anomaly_kd.data.textures as textures
from anomaly_kd.data.defects import DEFECT_KINDS, STAIN_MASK_LEVEL, apply_defect
from anomaly_kd.data.mvtec import MVTecDataModule
from anomaly_kd.data.textures import TEXTURE_CATEGORIES, TexturesDataModule, ensure_texture_set, texture_photo
from anomaly_kd.errors import UserError

SMALL = dict(crop_size=64, n_train=4, n_test_good=2, n_test_defect=4)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_photos_ship_with_scikit_image():
    for category in TEXTURE_CATEGORIES:
        photo = texture_photo(category)
        assert photo.shape == (512, 512) and photo.dtype == np.uint8 and photo.std() > 10


def test_normal_and_test_crops_come_from_disjoint_regions(tmp_path, monkeypatch):
    yy, xx = np.mgrid[0:512, 0:512]
    coded = ((yy >= 512 - textures.MAX_CROP) * 128 + xx % 128).astype(np.uint8)  # normal rows < 128, test rows >= 128
    monkeypatch.setattr(textures, "texture_photo", lambda category: coded)
    folder = ensure_texture_set(tmp_path, "brick", seed=0, crop_size=textures.MAX_CROP, n_train=6, n_test_good=6, n_test_defect=0)
    for sub, region in (("train/good", range(0, 128)), ("test/good", range(128, 256))):
        for p in (folder / sub).glob("*.png"):
            values = np.asarray(Image.open(p))
            assert values.min() in region and values.max() in region, p


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = files(ensure_texture_set(tmp_path / "a", "grass", seed=7, **SMALL))
    b = files(ensure_texture_set(tmp_path / "b", "grass", seed=7, **SMALL))
    c = files(ensure_texture_set(tmp_path / "c", "grass", seed=8, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and a["train/good/000.png"] != c["train/good/000.png"]
    assert len([k for k in a if k.startswith("test/") and not k.startswith("test/good")]) == 4
    manifest = json.loads(a["manifest.json"])
    assert manifest["seed"] == 7 and manifest["generator_version"] == textures.GENERATOR_VERSION
    assert manifest["counts"]["train/good"] == 4 and manifest["counts"]["test/patch"] == 1


def test_manifest_reuse_and_regeneration(tmp_path, monkeypatch):
    folder = ensure_texture_set(tmp_path, "gravel", seed=1, **SMALL)
    marker = folder / "train" / "good" / "000.png"
    stamp = marker.stat().st_mtime_ns
    assert ensure_texture_set(tmp_path, "gravel", seed=1, **SMALL) == folder
    assert marker.stat().st_mtime_ns == stamp  # reused, not rewritten
    ensure_texture_set(tmp_path, "gravel", seed=2, **SMALL)
    assert json.loads((folder / "manifest.json").read_text())["seed"] == 2
    monkeypatch.setattr(textures, "GENERATOR_VERSION", 99)
    ensure_texture_set(tmp_path, "gravel", seed=2, **SMALL)
    assert json.loads((folder / "manifest.json").read_text())["generator_version"] == 99
    (folder / "test" / "good" / "001.png").unlink()  # a damaged set is regenerated too
    ensure_texture_set(tmp_path, "gravel", seed=2, **SMALL)
    assert (folder / "test" / "good" / "001.png").is_file()
    assert [p.name for p in folder.parent.iterdir()] == ["gravel"]  # no temporary folders left


def test_unknown_category_lists_the_textures(tmp_path):
    with pytest.raises(UserError, match="brick, grass or gravel"):
        TexturesDataModule(root=str(tmp_path), category="bottle")


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_masks_are_exact(kind):
    rng = np.random.default_rng(0)
    for _ in range(5):
        clean = textures._crop(textures._regions(texture_photo("brick"))[1], 96, rng)
        image, mask = apply_defect(kind, clean, rng, source=texture_photo("grass"))
        assert image.shape == clean.shape and image.dtype == np.uint8 and mask.shape == clean.shape
        assert 0.002 < mask.mean() < 0.4
        change = np.abs(image.astype(int) - clean.astype(int))
        if kind == "stain":
            peak = change.max()
            assert change[mask].mean() > 20 and change[~mask].max() <= STAIN_MASK_LEVEL * peak + 2
        else:
            assert (change[~mask] == 0).all()
            assert change[mask].mean() > 15  # visible


def test_generated_masks_match_the_images(tmp_path):
    folder = ensure_texture_set(tmp_path, "brick", seed=0, **SMALL)
    for kind in DEFECT_KINDS:
        mask = np.asarray(Image.open(folder / "ground_truth" / kind / "000_mask.png"))
        assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
    assert not (folder / "ground_truth" / "good").exists()


def test_datamodule_generates_then_reads_as_mvtec(tmp_path):
    dm = TexturesDataModule(root=str(tmp_path), category="brick", image_size=32, seed=3, **SMALL)
    assert isinstance(dm, MVTecDataModule) and dm.has_masks and dm.category == "brick"
    dm.setup("fit")  # without prepare_data: setup generates too
    assert (tmp_path / "textures" / "brick" / "manifest.json").is_file()
    assert len(dm.train_set) == 3 and len(dm.val_set) == 1 and len(dm.test_set) == 6
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (6, 3, 32, 32)
    assert batch["label"].tolist() == [0, 0, 1, 1, 1, 1]
    assert batch["mask"][:2].sum() == 0 and (batch["mask"][2:].flatten(1).sum(1) > 0).all()


def test_bad_texture_options(tmp_path):
    with pytest.raises(UserError, match="crop_size"):
        TexturesDataModule(root=str(tmp_path), category="brick", crop_size=300)
    with pytest.raises(UserError, match="n_train"):
        TexturesDataModule(root=str(tmp_path), category="brick", n_train=0)
