"""One-class MNIST from tiny idx files (gz and raw) and, when present, the real copy."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from anomaly_kd.data.mnist import MNISTDataModule, stratified_subset
from anomaly_kd.errors import UserError


def datamodule(root, **kw) -> MNISTDataModule:
    dm = MNISTDataModule(root=str(root), category=kw.pop("category", 3), image_size=kw.pop("image_size", 8), **kw)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("gz", [True, False])
def test_tiny_mnist(tiny_mnist, gz):
    root = tiny_mnist(gz=gz)
    before = sorted(root.rglob("*"))
    dm = datamodule(root, category="3", batch_size=50)
    assert sorted(root.rglob("*")) == before  # nothing written into root
    assert dm.has_masks is False and dm.category == "3" and dm.image_size == 8
    assert len(dm.train_set) == 4 and len(dm.val_set) == 2  # 6 images of digit 3, ceil(1.2) held out
    train = next(iter(dm.train_dataloader()))
    assert train["label"].tolist() == [0, 0, 0, 0] and set(train["defect"]) == {"good"}
    assert torch.equal(train["image"], torch.full_like(train["image"], 31))  # digit 3, offset 1
    test = next(iter(dm.test_dataloader()))
    assert test["image"].shape == (30, 3, 8, 8) and test["image"].dtype == torch.uint8
    assert test["mask"].shape == (30, 1, 8, 8) and test["mask"].dtype == torch.uint8 and test["mask"].sum() == 0
    assert test["label"].dtype == torch.int64 and test["label"].sum() == 27
    assert test["path"][:2] == ["mnist/test/00000", "mnist/test/00001"] and test["mask_path"][0] == ""
    assert test["defect"][0] == "digit_0" and test["defect"][9] == "good"


def test_category_int_or_str_and_bad_values(tiny_mnist):
    root = tiny_mnist()
    assert datamodule(root, category=7).category == datamodule(root, category="7").category == "7"
    for bad in ("a", 10, "-1", None, True, "3.5"):
        with pytest.raises(UserError, match="0..9"):
            MNISTDataModule(root=str(root), category=bad)


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(UserError) as err:
        datamodule(tmp_path)
    message = str(err.value)
    assert "MNIST/raw/train-images-idx3-ubyte" in message and "data.download=true" in message and "paths.data_dir" in message


def test_truncated_idx_file(tiny_mnist):
    root = tiny_mnist(gz=False)
    path = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte is truncated"):
        datamodule(root)
    path.write_bytes(b"junk")
    with pytest.raises(UserError, match="not an MNIST IDX file"):
        datamodule(root)


def test_split_depends_only_on_seed(tiny_mnist):
    root = tiny_mnist()
    val = lambda seed: datamodule(root, seed=seed).val_set.ids.tolist()  # noqa: E731
    assert val(0) == val(0) and any(val(0) != val(s) for s in (1, 2, 3))
    dm = datamodule(root, seed=1)
    assert not set(dm.train_set.ids) & set(dm.val_set.ids)


def test_test_limit_is_stratified_and_seeded(tiny_mnist):
    dm = datamodule(tiny_mnist(), test_limit=20, seed=5)
    digits = dm.test_set.digits.tolist()
    assert len(digits) == 20 and Counter(digits) == {d: 2 for d in range(10)}
    assert dm.test_set.ids.tolist() == datamodule(tiny_mnist(name="again"), test_limit=20, seed=5).test_set.ids.tolist()
    skewed = np.array([0] * 90 + [1] * 10)
    picked = stratified_subset(skewed, 10, normal=1, seed=0)
    assert Counter(skewed[picked].tolist()) == {0: 9, 1: 1}
    assert 1 in skewed[stratified_subset(skewed, 2, normal=1, seed=0)]  # at least one normal
    with pytest.raises(UserError, match="test_limit"):
        MNISTDataModule(root="x", category=1, test_limit=0)


@pytest.mark.mnist
def test_counts_real_mnist(real_mnist_root):
    dm = datamodule(real_mnist_root, category=1, image_size=32, val_split=0.0)
    assert len(dm.train_set) == 6742
    assert len(dm.test_set) == 10000 and int((dm.test_set.digits == 1).sum()) == 1135
    item = dm.test_set[2]  # the third test image is a 1
    assert item["label"].item() == 0 and item["image"].shape == (3, 32, 32) and item["image"].max() > 0.9
    held = datamodule(real_mnist_root, category=1, image_size=32)
    assert len(held.val_set) == 1349 and len(held.train_set) == 6742 - 1349
    quick = datamodule(real_mnist_root, category=1, test_limit=1000)
    assert len(quick.test_set) == 1000 and 110 <= int((quick.test_set.digits == 1).sum()) <= 116
