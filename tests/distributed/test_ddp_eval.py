"""Several processes (ddp_spawn, gloo, CPU): every test image scored once, one result equal to a
single process's; validation normals counted once; a whole fit under ddp_spawn runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import FAST, compose_config

# 7 test images (3 good, 4 defective) and 15 training images: a 3-image validation hold-out.
N_TEST, N_VAL = 7, 3
METRICS = ("image_auroc", "pixel_auroc", "aupro", "test_f1_threshold", "image_f1_test_thr",
           "dice_test_f1_thr", "image_f1_val_thr", "dice_val_thr", "image_threshold_val", "pixel_threshold_val")
SPAWN = ["trainer=ddp_spawn", "trainer.devices=2"]


@pytest.fixture(scope="module")
def odd_mvtec(tmp_path_factory) -> Path:
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = tmp_path_factory.mktemp("odd_mvtec")
    return make_synthetic_mvtec(root, "widget", n_train=15, n_test_good=3, n_test_defect=N_TEST - 3, size=64)


def _overrides(root: Path, *extra: str) -> list[str]:
    return ["model=stfpm", "data=mvtec", "category=widget", f"paths.data_dir={root}", "logger=none",
            "model.pretrained=false", *FAST, *extra]


def _run(root: Path, out: Path, *extra: str) -> dict:
    from anomaly_kd.pipeline import run

    return run(compose_config(_overrides(root, *extra), out))


@pytest.fixture(scope="module")
def single(odd_mvtec, tmp_path_factory) -> dict:
    """One epoch trained in one process; tested there (best.ckpt)."""
    return _run(odd_mvtec, tmp_path_factory.mktemp("single") / "run")


pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def test_ddp_spawn_test_equals_one_process(odd_mvtec, single, tmp_path):
    ckpt = single["tested_checkpoint"]
    assert ckpt.endswith("best.ckpt")
    ddp = _run(odd_mvtec, tmp_path / "ddp", "train=false", f"ckpt_path={ckpt}", *SPAWN)
    saved = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert saved["metrics"]["n_images"] == N_TEST and saved["metrics"]["n_anomalous"] == 4
    for key in METRICS:
        assert saved["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-6), key
        assert ddp["metrics"][key] == saved["metrics"][key]
    assert saved["eval_resolution"] == "model" and saved["timing"]["metric_seconds"] >= 0
    # every image once, in data-set order: the same scores.csv (same weights, same batches' maths)
    one = (Path(single["output_dir"]) / "scores.csv").read_text()
    assert (tmp_path / "ddp" / "scores.csv").read_text() == one
    assert one.count("\n") == 1 + N_TEST
    # overlays: the images one process draws, with the global colour range
    ours = sorted((tmp_path / "ddp" / "images").glob("*.png"))
    theirs = sorted((Path(single["output_dir"]) / "images").glob("*.png"))
    assert [p.name for p in ours] == [p.name for p in theirs] and ours
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ours, theirs))
    assert not (tmp_path / "ddp" / ".test_results_handoff.json").exists()


def test_ddp_spawn_validation_counts_each_normal_once(odd_mvtec, single):
    """3 validation normals on 2 ranks (blocks of 2, one repeated): the statistics equal one
    process's, i.e. the repeat is dropped."""
    import pytorch_lightning as pl

    from anomaly_kd.trainer_setup import build_datamodule, build_model

    cfg = compose_config(_overrides(odd_mvtec), Path(single["output_dir"]).parent / "validate")
    results = {}
    for devices, strategy in ((1, "auto"), (2, "ddp_spawn")):
        datamodule, model = build_datamodule(cfg), build_model(cfg)
        trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        (results[devices],) = trainer.validate(model, datamodule=datamodule, ckpt_path=single["tested_checkpoint"],
                                               verbose=False)
    assert len(datamodule.val_dataloader().dataset) == N_VAL
    for key in ("val/map_mean", "val/score_mean"):
        assert results[2][key] == pytest.approx(results[1][key], abs=1e-6), key


def test_ddp_spawn_fit_runs_and_reports(odd_mvtec, tmp_path):
    out = tmp_path / "fit"
    results = _run(odd_mvtec, out, *SPAWN, "logger=csv")
    metrics = results["metrics"]
    assert metrics["n_images"] == N_TEST
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_threshold_val", "pixel_threshold_val"):
        assert math.isfinite(metrics[key]), key
    assert results["epochs_trained"] == 1 and results["tested_checkpoint"].endswith("best.ckpt")
    state = torch.load(out / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert torch.isfinite(state["image_threshold"]) and torch.isfinite(state["pixel_threshold"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["reproducibility"]["accelerator"] == "cpu" and saved["config"]["trainer"]["strategy"] == "ddp_spawn"
    # the test workers' CSV logger must not wipe the training curves of the fit workers
    logs = [p.read_text() for p in (out / "logs").glob("metrics*.csv")]
    assert any("train/loss" in text for text in logs) and any("test/aupro" in text for text in logs)


def test_ddp_spawn_uninformed_students_validation_counts_each_normal_once(odd_mvtec, tmp_path):
    """Uninformed Students gathers its own raw e and v maps for the normalisers: on 2 ranks (one
    validation normal repeated as padding) they, and the thresholds, equal one process's."""
    import pytorch_lightning as pl

    from anomaly_kd.trainer_setup import build_datamodule, build_model

    tiny = ["model=uninformed_students", "data.image_size=24", "model.patch_sizes=[17]", "model.n_students=2",
            "model.crop=8", "model.teacher_iterations=2", "model.teacher_batch_size=8",
            f"model.teacher_dir={tmp_path / 'teachers'}"]
    fitted = _run(odd_mvtec, tmp_path / "fit", *tiny, "test=false")
    ckpt = str(tmp_path / "fit" / "checkpoints" / "last.ckpt")
    assert fitted["status"] == "ok" and Path(ckpt).is_file()
    cfg = compose_config([*_overrides(odd_mvtec), *tiny], tmp_path / "validate")
    results, stats = {}, {}
    for devices, strategy in ((1, "auto"), (2, "ddp_spawn")):
        datamodule, model = build_datamodule(cfg), build_model(cfg)
        trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        (results[devices],) = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    assert len(datamodule.val_dataloader().dataset) == N_VAL
    for key in ("val/e_mean_p17", "val/v_mean_p17", "val/map_mean", "val/score_mean"):
        assert results[2][key] == pytest.approx(results[1][key], rel=1e-5, abs=1e-7), key
