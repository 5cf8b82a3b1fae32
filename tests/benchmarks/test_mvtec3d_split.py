"""benchmarks/mvtec3d_split.py: the MVTec 3D-AD layout linked from an MVTec-AD-layout copy with t/v-prefixed normals."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomaly_kd.data.mvtec3d import MVTec3DDataModule
from anomaly_kd.errors import UserError
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import mvtec3d_split  # noqa: E402


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def write_copy(root: Path) -> Path:
    """The shared tire copy's layout in miniature: train/good t000-t002 + v000-v001, test/{good,cut}, masks."""
    folder = root / "tire"
    for name in ("t000", "t001", "t002", "v000", "v001"):
        _png(folder / "train" / "good" / f"{name}.png", 10)
    _png(folder / "test" / "good" / "000.png", 20)
    for stem in ("000", "001"):
        _png(folder / "test" / "cut" / f"{stem}.png", 30)
        mask = np.zeros((8, 8), np.uint8)
        mask[int(stem) :, :2] = 255  # the two masks differ, so a mask paired with the wrong image shows
        (folder / "ground_truth" / "cut").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(folder / "ground_truth" / "cut" / f"{stem}_mask.png")
    return root


def test_the_data_set_split_is_read_by_data_mvtec3d(tmp_path):
    src = write_copy(tmp_path / "copy")
    dst = mvtec3d_split.build(src, "tire", tmp_path / "layout")
    dm = MVTec3DDataModule(root=str(dst), category="tire", image_size=8, batch_size=2)
    dm.setup("fit")
    names = lambda samples: [Path(s.path).name for s in samples]  # noqa: E731
    assert names(dm.train_set.samples) == ["t000.png", "t001.png", "t002.png"]
    assert names(dm.val_set.samples) == ["v000.png", "v001.png"]
    test = [(Path(s.path).relative_to(dst).as_posix(), s.label, s.mask_path and Path(s.mask_path).resolve())
            for s in dm.test_set.samples]  # fmt: skip
    gt = (src / "tire" / "ground_truth" / "cut").resolve()
    assert test == [("tire/test/cut/rgb/000.png", 1, gt / "000_mask.png"),
                    ("tire/test/cut/rgb/001.png", 1, gt / "001_mask.png"),
                    ("tire/test/good/rgb/000.png", 0, "")]  # fmt: skip
    # every file is a link to the copy's own file: nothing re-encoded
    assert (dst / "tire/train/good/rgb/t001.png").resolve() == (src / "tire/train/good/t001.png").resolve()
    # a second build over the same folder (rows started side by side) keeps the links and adds nothing
    before = sorted(p.relative_to(dst) for p in dst.rglob("*"))
    mvtec3d_split.build(src, "tire", dst)
    assert sorted(p.relative_to(dst) for p in dst.rglob("*")) == before


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda f: (f / "train/good/v000.png").rename(f / "train/good/x000.png"), "x000.png starts with neither 't'"),
    (lambda f: [p.unlink() for p in (f / "train/good").glob("v*")], "has no 'validation' images (names starting with 'v')"),
    (lambda f: (f / "ground_truth/cut/001_mask.png").unlink(), "cut/001.png has no mask; expected"),
])  # fmt: skip
def test_a_copy_without_the_layout_is_named_in_one_line(tmp_path, break_it, expected):
    src = write_copy(tmp_path / "copy")
    break_it(src / "tire")
    with pytest.raises(UserError, match=re.escape(expected)) as err:
        mvtec3d_split.build(src, "tire", tmp_path / "layout")
    assert "\n" not in str(err.value)


def test_quality_stops_a_mvtec3d_row_on_such_a_copy_in_one_line_before_training(tmp_path, capsys):
    import quality

    src = write_copy(tmp_path / "copy")
    [p.unlink() for p in (src / "tire/train/good").glob("v*")]
    argv = ["--rows", "simple_student_lite0_e200_mvtec3d_seed0", "--data-dir", str(src), "--out", str(tmp_path / "out")]
    assert quality.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: simple_student_lite0_e200_mvtec3d_seed0: ") and "\n" not in err
    assert "has no 'validation' images" in err and "need --data-dir to be an MVTec-AD-layout copy" in err
    assert not (tmp_path / "out" / "simple_student_lite0_e200_mvtec3d_seed0").exists()  # no run started
