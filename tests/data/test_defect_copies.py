"""Synthetic defects on copies of validation normals (anomaly_kd.data.defect_copies): exact masks,
pixels outside the window untouched, the same copies on every call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from anomaly_kd.data.defect_copies import SUFFIX, DefectCopies, draw_in_window
from anomaly_kd.errors import UserError


class Normals(Dataset):
    """Random RGB uint8 images [3, 64, 64], as a datamodule's validation items."""

    def __init__(self, n: int = 8, size: int = 64):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(30, 220, (n, 3, size, size), generator=g, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i].clone(), "label": 0, "mask": torch.zeros(1, 64, 64, dtype=torch.uint8),
                "path": f"train/good/{i:03d}.png", "mask_path": "", "defect": "good"}  # fmt: skip


def test_each_copy_is_its_normal_outside_one_window_with_the_kinds_in_turn():
    normals = Normals()
    copies = DefectCopies(normals, seed=3, window=0.25)
    assert len(copies) == len(normals)
    for i in range(len(copies)):
        item, normal = copies[i], normals[i]
        kind = ("patch", "scratch", "stain", "hole")[i % 4]
        assert item["label"] == 1 and item["defect"] == kind and item["path"] == f"train/good/{i:03d}.png{SUFFIX}{kind}"
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 64, 64)
        assert item["mask"].dtype == torch.uint8 and item["mask"].shape == (1, 64, 64)
        changed = (item["image"] != normal["image"]).any(0)
        ys, xs = np.nonzero(changed.numpy() | item["mask"][0].numpy().astype(bool))
        # everything that changed, and the mask, lie in one square of 16 px (0.25 x 64)
        assert ys.max() - ys.min() < 16 and xs.max() - xs.min() < 16
        assert item["mask"].sum() > 0
        if kind != "stain":  # patch, scratch, hole paint exactly their mask (defects module doc)
            assert torch.equal(changed, item["mask"][0].bool() & changed) and changed.sum() > 0
    assert torch.equal(normals[0]["image"], Normals()[0]["image"])  # the wrapped items are not modified


def test_copies_are_a_function_of_seed_and_index():
    a, b, c = DefectCopies(Normals(), seed=1), DefectCopies(Normals(), seed=1), DefectCopies(Normals(), seed=2)
    for i in range(4):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    assert any(not torch.equal(a[i]["mask"], c[i]["mask"]) for i in range(4))


def test_a_window_of_the_whole_image_is_the_generator_itself():
    image = Normals()[0]["image"]
    out, mask = draw_in_window(image, "hole", np.random.default_rng([0, 0]), 1.0)
    from anomaly_kd.data.defects import hole

    rng = np.random.default_rng([0, 0])
    rng.integers(0, 1), rng.integers(0, 1)  # the window's position (one choice each way)
    expected, expected_mask = hole(image.permute(1, 2, 0).numpy().copy(), rng)
    assert np.array_equal(out.permute(1, 2, 0).numpy(), expected)
    assert np.array_equal(mask[0].numpy().astype(bool), expected_mask)


@pytest.mark.parametrize("kwargs, message", [({"window": 0.0}, "window"), ({"window": 1.5}, "window"),
                                             ({"kinds": ("crack",)}, "kinds"), ({"kinds": ()}, "kinds")])  # fmt: skip
def test_bad_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(UserError, match=message):
        DefectCopies(Normals(), **kwargs)
