"""Image decoding (modes), resizing, the seeded split and option checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_kd.data.base import seeded_split
from anomaly_kd.data.images import image_tensor, is_image_file, load_mask, load_rgb, mask_tensor
from anomaly_kd.data.mvtec import MVTecDataModule
from anomaly_kd.errors import UserError


def save(tmp_path: Path, name: str, image: Image.Image) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def test_grey_is_repeated_to_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgb = load_rgb(save(tmp_path, "g.png", Image.fromarray(grey)))
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert (rgb == grey[:, :, None]).all()


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0
    rgb = load_rgb(save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert (rgb == [200, 100, 50]).all()


def test_palette_image(tmp_path):
    im = Image.fromarray(np.full((4, 4, 3), [10, 20, 30], np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert (load_rgb(save(tmp_path, "p.png", im)) == [10, 20, 30]).all()


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = save(tmp_path, "d.png", Image.fromarray(a))
    assert Image.open(path).mode.startswith("I")
    rgb = load_rgb(path)
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert image_tensor(rgb, 4).max().item() == pytest.approx(1.0)


def test_16bit_mask_and_value_one_mask_are_binary(tmp_path):
    m16 = np.array([[0, 1], [300, 0]], dtype=np.uint16)
    assert load_mask(save(tmp_path, "m16.png", Image.fromarray(m16))).tolist() == [[False, True], [True, False]]
    m1 = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    assert load_mask(save(tmp_path, "m1.png", Image.fromarray(m1))).tolist() == [[False, True], [True, False]]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black: nothing defective
    assert not load_mask(save(tmp_path, "ma.png", Image.fromarray(rgba, "RGBA"))).any()


def test_image_tensor_range_shape_dtype():
    pixels = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    t = image_tensor(pixels, 16)
    assert t.shape == (3, 16, 16) and t.dtype == torch.float32
    assert 0.0 <= t.min() and t.max() <= 1.0
    same = image_tensor(pixels[:16, :16], 16)
    assert torch.equal(same, torch.from_numpy(pixels[:16, :16]).permute(2, 0, 1).float() / 255)


def test_mask_resize_is_nearest_and_binary():
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    up = mask_tensor(mask, 8)
    assert up.shape == (1, 8, 8) and up.dtype == torch.float32
    assert set(up.unique().tolist()) <= {0.0, 1.0}
    assert up.sum().item() == 4 and up[0, 2:4, 4:6].sum().item() == 4
    down = mask_tensor(np.kron(mask, np.ones((4, 4), bool)), 4)  # 16 -> 4 recovers the original
    assert torch.equal(down[0].bool(), torch.from_numpy(mask))
    assert mask_tensor(None, 5).shape == (1, 5, 5) and mask_tensor(None, 5).sum() == 0


def test_image_extensions_case_insensitive(tmp_path):
    for name in ("a.PNG", "b.JpG", "c.jpeg", "d.bmp", "e.TIF", "f.tiff"):
        (tmp_path / name).write_bytes(b"")
        assert is_image_file(tmp_path / name), name
    for name in ("g.txt", ".h.png", "i.gif"):
        (tmp_path / name).write_bytes(b"")
        assert not is_image_file(tmp_path / name), name


def test_unreadable_and_truncated_images_name_the_file(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(UserError, match="fake.png"):
        load_rgb(fake)
    path = save(tmp_path, "t.png", Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match="t.png") as err:
        load_rgb(path)
    assert "\n" not in str(err.value)


def test_seeded_split_depends_only_on_seed():
    a = seeded_split(50, 0.2, seed=1)
    assert a == seeded_split(50, 0.2, seed=1)
    assert a != seeded_split(50, 0.2, seed=2)
    train, val = a
    assert len(val) == 10 and len(train) == 40
    assert not set(train) & set(val) and sorted(train + val) == list(range(50))
    assert len(seeded_split(7, 0.2, 0)[1]) == 2  # ceil, like sklearn's train_test_split
    assert seeded_split(5, 0.0, 0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(UserError, match="val_split"):
        seeded_split(1, 0.2, 0)


@pytest.mark.parametrize(
    "option, value",
    [("image_size", 0), ("image_size", 2.5), ("batch_size", 0), ("eval_batch_size", 0), ("num_workers", -1),
     ("val_split", 1.0), ("val_split", -0.1), ("val_split", True), ("seed", -1)],
)  # fmt: skip
def test_bad_options_raise_user_error(tmp_path, option, value):
    with pytest.raises(UserError, match=option) as err:
        MVTecDataModule(root=str(tmp_path), category="x", **{option: value})
    assert "\n" not in str(err.value)


def test_missing_root_or_category(tmp_path):
    with pytest.raises(UserError, match="paths.data_dir"):
        MVTecDataModule(root=None, category="x")
    with pytest.raises(UserError, match="category"):
        MVTecDataModule(root=str(tmp_path), category="")


# An 8 x 8 mask holding one vertical line, brought to 4 x 4: per output column c, nearest-exact
# takes input column 2c + 1; STFPM's cv2 bilinear (half-pixel centres, no antialiasing) averages
# columns 2c and 2c + 1 (weights 1/2); PIL's antialiased bilinear (RD4AD) spreads a triangle of
# radius 2 over columns 2c - 1 .. 2c + 2 with weights 1/8, 3/8, 3/8, 1/8 (truncated and
# renormalised at the border). Rows are all the same, so only the columns matter.
@pytest.mark.parametrize(
    "line_cols, expected",
    [
        # line in column 3: nearest keeps it (output column 1); cv2 gives 1/2 -> non-zero; PIL 3/8 <= 0.5
        ((3,), {"nearest": [1], "stfpm": [1], "rd4ad": []}),
        # line in column 2: nearest misses it; cv2 1/2 -> kept in output column 1; PIL 3/8 -> lost
        ((2,), {"nearest": [], "stfpm": [1], "rd4ad": []}),
        # columns 2-3: all keep output column 1 (PIL 3/8 + 3/8 = 3/4 > 0.5; column 0 gets 1/7)
        ((2, 3), {"nearest": [1], "stfpm": [1], "rd4ad": [1]}),
    ],
)
def test_mask_resize_rules_by_hand(line_cols, expected):
    mask = np.zeros((8, 8), bool)
    mask[:, list(line_cols)] = True
    for rule, columns in expected.items():
        out = mask_tensor(mask, 4, rule)[0].numpy()
        assert out.dtype == np.float32 and set(np.unique(out)) <= {0.0, 1.0}
        assert np.flatnonzero(out.any(axis=0)).tolist() == columns, rule
        assert (out == out[:1]).all()  # every row the same
    assert torch.equal(mask_tensor(mask, 8, "rd4ad"), mask_tensor(mask, 8, "stfpm"))  # same size: unchanged


def test_mask_resize_rd4ad_equals_the_authors_transform():
    from torchvision import transforms

    rng = np.random.default_rng(0)
    mask = np.kron(rng.random((10, 10)) < 0.3, np.ones((4, 4), bool))[:37, :39]  # 37 x 39 -> 16
    gt_transform = transforms.Compose([transforms.Resize((16, 16)), transforms.CenterCrop(16), transforms.ToTensor()])
    gt = gt_transform(Image.fromarray(mask.astype(np.uint8) * 255))  # hq-deng/RD4AD dataset.py
    assert torch.equal(mask_tensor(mask, 16, "rd4ad"), (gt > 0.5).float())


def test_mask_resize_unknown_rule_is_a_user_error():
    with pytest.raises(UserError, match="data.mask_resize='bilinear' must be one of nearest, stfpm, rd4ad"):
        mask_tensor(np.zeros((4, 4), bool), 2, "bilinear")
