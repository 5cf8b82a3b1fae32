"""MVTec layout: parsing, pairing, batch format, split, and every user error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_kd.data.mvtec import MVTEC_CATEGORIES, MVTecDataModule
from anomaly_kd.data.synthetic import make_synthetic_mvtec
from anomaly_kd.errors import UserError

CAT = "widget"


def datamodule(root: Path, **kw) -> MVTecDataModule:
    dm = MVTecDataModule(root=str(root), category=kw.pop("category", CAT), image_size=kw.pop("image_size", 16), batch_size=4, **kw)
    dm.setup("fit")
    return dm


def setup_error(root: Path, category: str = CAT) -> str:
    with pytest.raises(UserError) as err:
        datamodule(root, category=category)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_official_categories():
    assert len(MVTEC_CATEGORIES) == 15 and "metal_nut" in MVTEC_CATEGORIES and "zipper" in MVTEC_CATEGORIES


def test_layout_is_indexed_and_paired(mvtec_root):
    dm = datamodule(mvtec_root)
    assert dm.has_masks and dm.category == CAT and dm.image_size == 16
    assert len(dm.train_set) == 8 and len(dm.val_set) == 2  # ceil(10 * 0.2) held out
    test = dm.test_set.samples
    assert [s.defect for s in test] == ["good", "good", "hole", "hole", "scratch", "scratch"]
    assert [s.label for s in test] == [0, 0, 1, 1, 1, 1]
    for s in test:
        if s.label:
            assert Path(s.mask_path).name == Path(s.path).stem + "_mask.png"
            assert Path(s.mask_path).parent.name == s.defect
        else:
            assert s.mask_path == ""


def test_batch_format(mvtec_root):
    dm = datamodule(mvtec_root)
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.uint8
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [0, 0, 1, 1]
    assert batch["mask"].shape == (4, 1, 16, 16) and batch["mask"].dtype == torch.uint8
    assert set(batch["mask"].unique().tolist()) <= {0, 1}
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["mask"][:2].sum() == 0 and (batch["mask"][2:].flatten(1).sum(1) > 0).all()
    assert isinstance(batch["path"][0], str) and batch["mask_path"][0] == "" and batch["defect"] == ["good", "good", "hole", "hole"]


@pytest.mark.parametrize("rule", ["stfpm", "rd4ad"])
def test_mask_resize_reaches_the_test_masks(mvtec_root, rule):
    from anomaly_kd.data.images import load_mask, mask_tensor

    dm = datamodule(mvtec_root, mask_resize=rule)  # 32 px files, 16 px model size
    for item in (dm.test_set[i] for i in range(len(dm.test_set))):
        expected = mask_tensor(load_mask(item["mask_path"]) if item["mask_path"] else None, 16, rule)
        assert torch.equal(item["mask"], expected)
    assert datamodule(mvtec_root).mask_resize == "nearest"  # the default
    with pytest.raises(UserError, match="data.mask_resize='area'"):
        datamodule(mvtec_root, mask_resize="area")


def test_loaders(mvtec_root):
    dm = datamodule(mvtec_root)
    train = dm.train_dataloader()
    assert train.drop_last is False and isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert sum(len(b["label"]) for b in train) == 8
    val = [p for b in dm.val_dataloader() for p in b["path"]]
    assert len(val) == 2 and all("/train/good/" in p for p in val)
    order = [p for b in dm.test_dataloader() for p in b["path"]]
    assert order == [p for b in dm.test_dataloader() for p in b["path"]] == [s.path for s in dm.test_set.samples]


def test_loaders_set_themselves_up(mvtec_root):
    dm = MVTecDataModule(root=str(mvtec_root), category=CAT, image_size=8)
    assert len(dm.test_dataloader().dataset) == 6


def test_split_depends_only_on_seed(mvtec_root):
    val = lambda seed: sorted(s.path for s in datamodule(mvtec_root, seed=seed).val_set.samples)  # noqa: E731
    assert val(3) == val(3)
    assert any(val(3) != val(s) for s in (4, 5, 6))
    dm = datamodule(mvtec_root, seed=3)
    train = {s.path for s in dm.train_set.samples}
    assert not train & set(val(3)) and len(train | set(val(3))) == 10
    assert len(datamodule(mvtec_root, val_split=0.0).val_set) == 0


def test_other_extensions_and_modes(tmp_path):
    root = make_synthetic_mvtec(tmp_path, n_train=3, n_test_defect=1, size=24, mode="RGB")
    good = root / CAT / "train" / "good"
    Image.open(good / "000.png").save(good / "000.JPG")
    Image.open(good / "001.png").save(good / "extra.bmp")
    Image.open(good / "002.png").save(good / "extra2.tiff")
    (good / "000.png").unlink()
    (good / "notes.txt").write_text("ignored")
    assert len(datamodule(root, val_split=0.0).train_set) == 5
    first = {}
    for mode in ("RGB", "RGBA", "L", "I;16"):
        other = make_synthetic_mvtec(tmp_path / mode, n_train=3, n_test_defect=1, size=24, mode=mode)
        first[mode] = datamodule(other, val_split=0.0).test_set[0]["image"]
        assert first[mode].shape == (3, 16, 16) and 0.3 * 255 < first[mode].float().mean() < 0.95 * 255
    assert torch.equal(first["RGB"], first["RGBA"])  # alpha dropped
    assert torch.equal(first["L"], first["I;16"])  # 16 bit scaled back exactly
    assert torch.equal(first["L"][0], first["L"][2])


def test_missing_root_names_the_option(tmp_path):
    message = setup_error(tmp_path / "nowhere")
    assert "nowhere" in message and "paths.data_dir" in message and "ANOMALY_KD_DATA_DIR" in message


def test_missing_category_lists_categories(mvtec_root):
    make_synthetic_mvtec(mvtec_root, category="gadget", n_train=1, n_test_defect=1, size=8)
    message = setup_error(mvtec_root, category="gizmo")
    assert "gadget, widget" in message and "bottle" in message  # lists what is there and the official names
    message = setup_error(mvtec_root, category="bottle")
    assert "official MVTec AD category" in message and "gadget, widget" in message


def test_missing_or_empty_train_good(mvtec_root):
    good = mvtec_root / CAT / "train" / "good"
    for p in good.iterdir():
        p.unlink()
    assert "train/good has no images" in setup_error(mvtec_root)
    good.rmdir()
    assert "train/good is missing" in setup_error(mvtec_root)


def test_missing_mask_names_the_image(mvtec_root):
    (mvtec_root / CAT / "ground_truth" / "hole" / "001_mask.png").unlink()
    message = setup_error(mvtec_root)
    assert "test/hole/001.png has no mask" in message and "001_mask.png" in message


def test_mask_without_image_names_the_mask(mvtec_root):
    (mvtec_root / CAT / "test" / "scratch" / "000.png").unlink()
    assert "ground_truth/scratch/000_mask.png has no test image" in setup_error(mvtec_root)


def test_mask_folder_without_test_folder(mvtec_root):
    shutil.rmtree(mvtec_root / CAT / "test" / "hole")
    assert "ground_truth/hole/000_mask.png has no test image" in setup_error(mvtec_root)


def test_mask_size_mismatch_names_both(mvtec_root):
    mask = mvtec_root / CAT / "ground_truth" / "scratch" / "001_mask.png"
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(mask)
    message = setup_error(mvtec_root)
    assert "001_mask.png is 30x20" in message and "test/scratch/001.png is 32x32" in message


def test_non_image_file_fails_at_setup(mvtec_root):
    (mvtec_root / CAT / "test" / "good" / "000.png").write_text("hello")
    assert "cannot read image file" in setup_error(mvtec_root) and "test/good/000.png" in setup_error(mvtec_root)


def test_truncated_image_names_the_file(mvtec_root):
    path = mvtec_root / CAT / "test" / "good" / "001.png"
    path.write_bytes(path.read_bytes()[:200])
    dm = datamodule(mvtec_root)  # the header is intact: found when decoding
    with pytest.raises(UserError, match="test/good/001.png") as err:
        dm.test_set[1]
    assert "\n" not in str(err.value)


def test_badly_named_mask(mvtec_root):
    shutil.copy(mvtec_root / CAT / "ground_truth" / "hole" / "000_mask.png", mvtec_root / CAT / "ground_truth" / "hole" / "000.png")
    assert "ground_truth/hole/000.png is not named <image name>_mask" in setup_error(mvtec_root)
