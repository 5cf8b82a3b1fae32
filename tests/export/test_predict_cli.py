"""Predict: scores.csv, overlays and the checkpoint's threshold, for a folder and a single image;
the errors a user can cause."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_kd.data.images import image_tensor, list_images, load_rgb
from anomaly_kd.errors import UserError
from anomaly_kd.predict import CSV_COLUMNS, predict

REPO = Path(__file__).resolve().parents[2]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


def checkpoint_threshold(ckpt: Path) -> float:
    return float(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]["image_threshold"])


@pytest.mark.slow
def test_predict_folder_and_single_image(trained, predict_cfg, tiny_mvtec, tmp_path):
    folder = tiny_mvtec / "widget" / "test" / "scratch"
    paths = list_images(folder)
    out = tmp_path / "folder"
    summary = predict(predict_cfg(f"ckpt={trained.ckpt}", f"input={folder}", f"output_dir={out}", "batch_size=3", "device=cpu"))

    rows = read_csv(out / "scores.csv")
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    threshold = checkpoint_threshold(trained.ckpt)
    assert math.isfinite(threshold)
    assert all(float(r["threshold"]) == threshold for r in rows)  # exactly the checkpoint's value
    for r in rows:
        assert r["is_anomalous"] == str(int(float(r["score"]) >= threshold))
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"{p.stem}.png" for p in paths]
    with Image.open(out / "overlays" / f"{paths[0].stem}.png") as im:
        assert im.mode == "RGB" and im.width >= 3 * trained.image_size and im.height > trained.image_size
    assert summary["n_images"] == len(paths) and summary["threshold"] == threshold
    assert json.loads((out / "predict.json").read_text())["model"] == trained.name

    # Scores are those of the Lightning model on the images read as in training.
    model = trained.lightning_model()
    images = torch.stack([image_tensor(load_rgb(p), trained.image_size) for p in paths])
    with torch.no_grad():
        _, expected = model.anomaly_map(images)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected.numpy(), rtol=1e-5, atol=1e-5)
    # ... in channels_last on the CPU by default (as training and testing), NCHW on request: the same
    # scores to float round-off.
    assert summary["channels_last"] is True
    nchw = predict(predict_cfg(f"ckpt={trained.ckpt}", f"input={folder}", f"output_dir={tmp_path / 'nchw'}",
                               "batch_size=3", "device=cpu", "channels_last=false", "overlays=false"))  # fmt: skip
    assert nchw["channels_last"] is False
    np.testing.assert_allclose([float(r["score"]) for r in read_csv(tmp_path / "nchw" / "scores.csv")],
                               [float(r["score"]) for r in rows], rtol=1e-5, atol=1e-5)  # fmt: skip

    # A single image, default output folder <run>/predict/<stem>.
    one = tiny_mvtec / "widget" / "test" / "good" / "000.png"
    summary = predict(predict_cfg(f"ckpt={trained.ckpt}", f"input={one}", "device=cpu"))
    out = trained.run_dir.resolve() / "predict" / "000"
    assert Path(summary["output_dir"]) == out
    rows = read_csv(out / "scores.csv")
    assert len(rows) == 1 and rows[0]["path"] == str(one) and float(rows[0]["threshold"]) == threshold
    assert [p.name for p in (out / "overlays").iterdir()] == ["000.png"]


@pytest.mark.slow
def test_predict_mixed_files_batches_and_name_clashes(trained_stfpm, predict_cfg, tiny_mvtec, tmp_path):
    source = tiny_mvtec / "widget" / "test" / "good"
    folder = tmp_path / "inputs"
    folder.mkdir()
    rgb = load_rgb(source / "000.png")
    Image.fromarray(rgb).convert("L").resize((100, 80)).save(folder / "a.png")  # grey, other size
    Image.fromarray(rgb).save(folder / "a.jpg")  # same stem as a.png
    Image.fromarray(rgb).convert("RGBA").save(folder / "b.bmp")
    Image.fromarray(rgb).save(folder / "c.tif")
    shutil.copy(source / "001.png", folder / ".hidden.png")  # skipped
    (folder / "notes.txt").write_text("not an image")  # skipped (extension)
    out = tmp_path / "out"
    predict(predict_cfg(f"ckpt={trained_stfpm.ckpt}", f"input={folder}", f"output_dir={out}", "batch_size=3", "device=cpu"))
    rows = read_csv(out / "scores.csv")
    assert [Path(r["path"]).name for r in rows] == ["a.jpg", "a.png", "b.bmp", "c.tif"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.jpg.png", "a.png.png", "b.png", "c.png"]
    assert float(rows[2]["score"]) == pytest.approx(float(rows[3]["score"]), abs=1e-6)  # same RGB pixels


@pytest.mark.slow
def test_predict_without_threshold_warns_and_leaves_decision_empty(trained_stfpm, predict_cfg, tiny_mvtec, tmp_path, caplog):
    checkpoint = torch.load(trained_stfpm.ckpt, map_location="cpu", weights_only=True)
    checkpoint["state_dict"]["image_threshold"] = torch.tensor(float("nan"))
    checkpoint["state_dict"]["pixel_threshold"] = torch.tensor(float("nan"))
    ckpt = tmp_path / "never_validated.ckpt"
    torch.save(checkpoint, ckpt)
    image = tiny_mvtec / "widget" / "test" / "scratch" / "000.png"
    with caplog.at_level(logging.WARNING, logger="anomaly_kd.predict"):
        summary = predict(predict_cfg(f"ckpt={ckpt}", f"input={image}", f"output_dir={tmp_path / 'a'}", "device=cpu"))
    assert "no image threshold" in caplog.text
    row = read_csv(tmp_path / "a" / "scores.csv")[0]
    assert row["threshold"] == "" and row["is_anomalous"] == "" and math.isfinite(float(row["score"]))
    assert summary["n_anomalous"] is None and (tmp_path / "a" / "overlays" / "000.png").is_file()
    # An explicit threshold decides.
    predict(predict_cfg(f"ckpt={ckpt}", f"input={image}", f"output_dir={tmp_path / 'b'}", "threshold=-1e9", "device=cpu"))
    row = read_csv(tmp_path / "b" / "scores.csv")[0]
    assert float(row["threshold"]) == -1e9 and row["is_anomalous"] == "1"


@pytest.mark.slow
def test_unreadable_image_is_a_user_error_naming_it(trained_stfpm, predict_cfg, tiny_mvtec, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(tiny_mvtec / "widget" / "test" / "good" / "000.png", folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"cannot read image file .*broken\.png"):
        predict(predict_cfg(f"ckpt={trained_stfpm.ckpt}", f"input={folder}", f"output_dir={out}"))
    assert not out.exists()  # checked before anything is written
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UserError, match="cannot read image file"):
        predict(predict_cfg(f"ckpt={trained_stfpm.ckpt}", f"input={text}", f"output_dir={out}"))


def test_missing_inputs_are_user_errors(predict_cfg, tmp_path):
    ckpt = tmp_path / "missing.ckpt"
    with pytest.raises(UserError, match="No checkpoint given"):
        predict(predict_cfg(f"input={tmp_path}"))
    with pytest.raises(UserError, match="not found"):
        predict(predict_cfg(f"ckpt={ckpt}", f"input={tmp_path}"))
    ckpt.write_bytes(b"")  # the input is checked before the checkpoint is read
    with pytest.raises(UserError, match="No input given"):
        predict(predict_cfg(f"ckpt={ckpt}"))
    with pytest.raises(UserError, match="Input .* not found"):
        predict(predict_cfg(f"ckpt={ckpt}", f"input={tmp_path / 'nope'}"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="No images"):
        predict(predict_cfg(f"ckpt={ckpt}", f"input={empty}"))
    with pytest.raises(UserError, match="overlay_scale=hot"):
        predict(predict_cfg(f"ckpt={ckpt}", f"input={empty}", "overlay_scale=hot"))
    image = tmp_path / "one.png"  # a readable input: the options below fail before the empty checkpoint is read
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(UserError, match=r"^channels_last=sometimes must be true, false or auto.$"):
        predict(predict_cfg(f"ckpt={ckpt}", f"input={image}", "channels_last=sometimes"))
    with pytest.raises(UserError, match=r"^threshold=high is not a number"):
        predict(predict_cfg(f"ckpt={ckpt}", f"input={image}", "threshold=high"))


@pytest.mark.slow
def test_cli_writes_outputs_and_nothing_in_the_working_folder(trained_stfpm, tiny_mvtec, tmp_path):
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    image = tiny_mvtec / "widget" / "test" / "scratch" / "001.png"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "anomaly_kd.predict", f"ckpt={trained_stfpm.ckpt}", f"input={image}",
         f"output_dir={out}", "device=cpu"],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Predicted 1 image(s) with stfpm" in proc.stdout
    assert (out / "scores.csv").is_file() and (out / "overlays" / "001.png").is_file()
    assert list(cwd.iterdir()) == []
