"""data.cache: ram, disk and none give the same bytes; disk entries are reused, keyed and atomic;
the memory check; the uint8 rounding of the resize."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomaly_kd.data import cache as cache_module
from anomaly_kd.data.images import image_tensor, resize_image
from anomaly_kd.data.mnist import MNISTDataModule
from anomaly_kd.data.mvtec import MVTecDataModule
from anomaly_kd.data.textures import TexturesDataModule
from anomaly_kd.errors import UserError

TENSORS = ("image", "mask", "label", "index")


def _mvtec(root, **kw):
    return MVTecDataModule(root=str(root), category="widget", image_size=12, batch_size=3, **kw)


def _textures(root, **kw):
    small = dict(crop_size=32, n_train=4, n_test_good=2, n_test_defect=4)
    return TexturesDataModule(root=str(root), category="grass", image_size=20, batch_size=3, **small, **kw)


def _mnist(root, **kw):
    return MNISTDataModule(root=str(root), category=3, image_size=40, batch_size=7, **kw)  # 28 -> 40: upsampled


def _batches(dm) -> list[dict]:
    dm.setup("fit")
    out = []
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        out += list(loader)
    return out


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in TENSORS:
            assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
        assert x["path"] == y["path"] and x["mask_path"] == y["mask_path"] and x["defect"] == y["defect"]


@pytest.mark.parametrize("kind", ["mvtec", "textures", "mnist"])
def test_cached_and_uncached_batches_are_equal(kind, mvtec_root, tiny_mnist, tmp_path):
    make, root = {
        "mvtec": (_mvtec, mvtec_root),
        "textures": (_textures, tmp_path / "data"),
        "mnist": (_mnist, tiny_mnist() if kind == "mnist" else None),
    }[kind]
    cache_dir = tmp_path / "cache"
    reference = _batches(make(root, cache="none"))
    assert reference[0]["image"].dtype == torch.uint8
    _assert_same(reference, _batches(make(root, cache="ram")))
    _assert_same(reference, _batches(make(root, cache="disk", cache_dir=cache_dir)))  # writes the entries
    entries = sorted(cache_dir.rglob("*.bin"))
    assert entries and not list(cache_dir.rglob("*.tmp"))
    _assert_same(reference, _batches(make(root, cache="disk", cache_dir=cache_dir)))  # reads them
    assert sorted(cache_dir.rglob("*.bin")) == entries


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_cache_with_loader_workers(mode, mvtec_root, tmp_path):
    reference = _batches(_mvtec(mvtec_root, cache="none"))
    _assert_same(reference, _batches(_mvtec(mvtec_root, cache=mode, cache_dir=tmp_path / "c", num_workers=2)))


def test_ram_cache_decodes_each_item_once(mvtec_root, monkeypatch):
    from anomaly_kd.data.mvtec import ImageFolderDataset

    calls = []
    original = ImageFolderDataset.decode

    def counting(self, index):
        calls.append(self.samples[index].path)
        return original(self, index)

    monkeypatch.setattr(ImageFolderDataset, "decode", counting)
    dm = _mvtec(mvtec_root, cache="ram")
    dm.setup("fit")
    for _ in range(3):  # three epochs
        list(dm.train_dataloader())
        list(dm.val_dataloader())
    list(dm.test_dataloader())
    assert len(calls) == len(set(calls)) == len(dm.train_set) + len(dm.val_set) + len(dm.test_set)


def test_disk_cache_is_reused_and_keyed_by_the_file(mvtec_root, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = _batches(_mvtec(mvtec_root, cache="disk", cache_dir=cache_dir))
    dm = _mvtec(mvtec_root, cache="disk", cache_dir=cache_dir)
    dm.setup("fit")

    def refuse(self, index):
        raise AssertionError("decoded although the entry is on disk")

    monkeypatch.setattr(type(dm.train_set), "decode", refuse)
    _assert_same(first, _batches(dm))  # another job (same settings) reads every entry
    monkeypatch.undo()
    # an edited file gets a new entry; other image sizes get their own
    path = Path(dm.test_set.samples[0].path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    before = set(cache_dir.rglob("*.bin"))
    dm.test_set[0]
    assert len(set(cache_dir.rglob("*.bin")) - before) == 1
    other = MVTecDataModule(root=str(mvtec_root), category="widget", image_size=8, cache="disk", cache_dir=str(cache_dir))
    other.setup("fit")
    assert other.test_set[0]["image"].shape == (3, 8, 8)
    assert (cache_dir / f"v{cache_module.CACHE_VERSION}-s8-c3").is_dir()


def test_a_truncated_disk_entry_is_rebuilt(mvtec_root, tmp_path):
    cache_dir = tmp_path / "cache"
    dm = _mvtec(mvtec_root, cache="disk", cache_dir=cache_dir)
    dm.setup("fit")
    good = dm.test_set[2]
    entry = dm.test_set._disk_path(2)
    entry.write_bytes(entry.read_bytes()[:10])
    again = dm.test_set[2]
    assert torch.equal(again["image"], good["image"]) and torch.equal(again["mask"], good["mask"])


def test_ram_cache_that_does_not_fit_stops_with_one_line(mvtec_root, monkeypatch):
    monkeypatch.setattr(cache_module, "available_memory", lambda: 1000)
    dm = _mvtec(mvtec_root, cache="ram")
    dm.setup("fit")
    need = len(dm.train_set) * (3 * 12 * 12 + (12 * 12 + 7) // 8)
    assert dm.train_set.cache_bytes() == need
    with pytest.raises(UserError) as err:
        dm.train_dataloader()
    message = str(err.value)
    assert "\n" not in message and "data.cache=disk" in message and "data.cache=none" in message
    assert f"{need / 2**30:.2f} GiB" in message
    _mvtec(mvtec_root, cache="none").train_dataloader()  # the other modes need no check


def test_bad_cache_option(mvtec_root):
    with pytest.raises(UserError, match="data.cache='memory' must be one of ram, disk, none"):
        _mvtec(mvtec_root, cache="memory")
    with pytest.raises(UserError, match="data.cache_dir"):
        _mvtec(mvtec_root, cache="disk", cache_dir=None).setup("fit")


def test_resize_rounds_the_float_resize_once():
    pixels = np.random.default_rng(0).integers(0, 256, (37, 23, 3), dtype=np.uint8)
    floats = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    for size in (8, 16, 50):  # down and up
        resized = F.interpolate(floats, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        expected = torch.round(resized * 255).clamp(0, 255).to(torch.uint8)
        assert torch.equal(resize_image(pixels, size), expected)
        assert torch.equal(image_tensor(pixels, size), expected.float() / 255)
        assert (image_tensor(pixels, size) - resized.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-7
    grey = pixels[..., 0]
    assert torch.equal(resize_image(grey, 16, channels=1).expand(3, -1, -1), resize_image(grey, 16))
