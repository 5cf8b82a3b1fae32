"""End-to-end runs through the real config tree and entry point, on tiny data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FAST, REPO, compose_config

pytestmark = pytest.mark.slow


def test_stfpm_end_to_end_writes_results_checkpoints_and_images(run_tiny, tmp_path):
    results = run_tiny("stfpm", "trainer.max_epochs=2", logger="csv")
    out = Path(results["output_dir"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "ok" and saved["model"] == "stfpm" and saved["category"] == "widget"
    metrics = saved["metrics"]
    for key in ("image_auroc", "pixel_auroc", "aupro", "dice_val_thr", "dice_test_f1_thr"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert saved["seed"] == 0 and saved["versions"]["torch"].startswith("2.14.1")
    from anomaly_kd.reporting.results import cpu_name

    assert saved["device"] == cpu_name() and saved["precision"] == "32-true"  # the default trainer, on CPU
    assert saved["config"]["model"]["lr"] == 0.4
    assert saved["timing"]["train_seconds"] > 0 and saved["timing"]["test_images_per_second"] > 0
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert saved["tested_checkpoint"].endswith("best.ckpt")
    # overlays (callbacks.overlays.max_images=4): the first 2 anomalous and 2 normal images in test
    # order, named <k>_<defect>_<stem>.png, each with the predicted and true outlines drawn
    with open(out / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    kept, counts = [], {"0": 0, "1": 0}
    for row in rows:
        if counts[row["label"]] < 2:
            counts[row["label"]] += 1
            kept.append("_".join(Path(row["path"]).with_suffix("").parts[-2:]))
    expected = [f"{k:03d}_{stem}.png" for k, stem in enumerate(kept)]
    assert sorted(p.name for p in (out / "images").iterdir()) == expected and len(expected) == 4
    assert (out / "scores.csv").read_text().count("\n") == 1 + metrics["n_images"]
    assert (out / "logs" / "metrics.csv").is_file()
    # the tested epoch is the one whose validation map mean was lowest (0-based, as the log counts)
    with open(out / "logs" / "metrics.csv") as handle:
        curve = {int(r["epoch"]): float(r["val/map_mean"]) for r in csv.DictReader(handle) if r.get("val/map_mean")}
    assert sorted(curve) == [0, 1] and saved["tested_epoch"] == min(curve, key=curve.get)


def test_thresholds_come_from_validation_normals_and_travel_in_the_checkpoint(run_tiny):
    import torch

    results = run_tiny("stfpm")
    ckpt = torch.load(Path(results["output_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)
    state = ckpt["state_dict"]
    assert torch.isfinite(state["pixel_threshold"]) and torch.isfinite(state["image_threshold"])
    assert results["metrics"]["pixel_threshold_val"] is not None


def test_test_only_run_from_checkpoint_reproduces_metrics(run_tiny):
    first = run_tiny("stfpm")
    best = first["tested_checkpoint"]
    again = run_tiny("stfpm", "train=false", f"ckpt_path={best}")
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert again["metrics"][key] == pytest.approx(first["metrics"][key], abs=1e-12)
    assert again["tested_epoch"] == first["tested_epoch"] == 0  # the checkpoint's own epoch (FAST: one epoch)


def _cli(args: list[str], cwd: Path, env_extra: dict | None = None, exe=None):
    env = {**os.environ, "WANDB_MODE": "offline", **(env_extra or {})}
    cmd = exe or [sys.executable, "-m", "anomaly_kd.run"]
    return subprocess.run(cmd + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_cli_entry_point_runs_and_prints_the_table(tiny_mvtec, tmp_path):
    out = tmp_path / "cli"
    proc = _cli(
        ["model=stfpm", "data=mvtec", "category=widget", f"paths.data_dir={tiny_mvtec}",
         "model.pretrained=false", f"hydra.run.dir={out}", *FAST],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "image AUROC" in proc.stdout and str(out) in proc.stdout
    assert (out / "results.json").is_file()


def test_console_script_with_env_data_dir(tiny_mvtec, tmp_path):
    exe = Path(sys.executable).with_name("anomaly-kd")
    out = tmp_path / "script"
    proc = _cli(
        ["model=stfpm", "data=mvtec", "category=widget", "model.pretrained=false",
         f"hydra.run.dir={out}", *FAST],
        cwd=tmp_path, env_extra={"ANOMALY_KD_DATA_DIR": str(tiny_mvtec)}, exe=[str(exe)],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["config"]["paths"]["data_dir"] == str(tiny_mvtec)


def test_a_user_error_ends_the_command_in_one_clear_line(tiny_mvtec, tmp_path):
    """Through a real process: Hydra's parsing, the logging set-up, stderr and the exit status."""
    args = [f"paths.data_dir={tiny_mvtec}", "model.pretrained=false", f"hydra.run.dir={tmp_path / 'o'}",
            "data=mvtec", "category=nothere"]
    proc = _cli(args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "nothere" in last, last
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data=mvtec", "category=widget", "paths.data_dir=/no/such/dir"], "/no/such/dir"),
        (["data=mvtec", "category=widget", "model.backbone=resnet18", "model.pretrained=true"],
         "model.weights_path"),
        (["data=mvtec", "category=widget", "fpr_limit=1.5"], "fpr_limit"),
        (["data=mvtec", "category=widget", "trainer.max_epochs=-3"], "max_epochs"),
        (["data=mvtec", "category=widget", "data.image_size=70"], "divisible"),
    ],
)
def test_user_errors_end_in_one_clear_line(tiny_mvtec, tmp_path, capsys, args, message):
    """The command's own job function (`run_job`, what `main` calls after Hydra composed the config),
    in this process: each error a user can cause ends in one `error:` line and exit status 2."""
    from anomaly_kd.run import run_job

    cfg = compose_config([f"paths.data_dir={tiny_mvtec}", "model.pretrained=false", *args], tmp_path / "o")
    with pytest.raises(SystemExit) as exited:
        run_job(cfg)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert "Traceback" not in err


def test_unknown_model_name_lists_the_choices(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as error:
        compose_config(["model=nosuchmodel"], tmp_path)
    assert "Could not find 'model/nosuchmodel'" in str(error.value) and "stfpm" in str(error.value)


def test_config_tree_is_found_from_a_plain_wheel_install_in_another_directory(tmp_path):
    """`pip install .` (not editable) ships conf/ inside the package."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         str(wheel_dir), str(REPO)], check=True, capture_output=True, timeout=300,
    )
    wheel = next(wheel_dir.glob("anomaly_kd-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-m", "anomaly_kd.run", "--cfg", "job", "model=stfpm", "data=mvtec"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "anomaly_kd.models.stfpm.STFPM" in proc.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import anomaly_kd; print(anomaly_kd.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )
    assert probe.stdout.strip().startswith(str(target))
    papers = subprocess.run(  # the published per-category tables are package data of the wheel
        [sys.executable, "-c", "from anomaly_kd.reporting.paper_values import all_paper_values as a; "
         "print(sorted({v.source for v in a()}))"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )
    assert papers.stdout.strip() == "['rd4ad_paddle', 'rd4ad_paper', 'stfpm_paper', 'thesis']", papers.stderr[-2000:]
