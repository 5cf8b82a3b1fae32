"""eval_resolution=native (maps upsampled to the original mask size), float32 maps whatever the
training precision, and bf16-mixed training against fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomaly_kd.errors import UserError
from tests.helpers import FAST, compose_config

# bf16-mixed against 32-true, same data/seed/epochs (2 epochs on the 7-image test folder below).
# Measured (stfpm): pixel AUROC 0.7618 vs 0.7704, AUPRO 0.4382 vs 0.4514, image AUROC 1.0 vs 1.0.
# Pixel metrics pool thousands of pixels; the image AUROC of 4 x 3 images moves in steps of 1/12.
BF16_TOLERANCE = {"pixel_auroc": 0.05, "aupro": 0.05, "image_auroc": 0.17}


def _overrides(root: Path, *extra: str, model: str = "stfpm") -> list[str]:
    return [f"model={model}", "data=mvtec", "category=widget", f"paths.data_dir={root}", "logger=none",
            "model.pretrained=false", *FAST, *extra]


def _run(root: Path, out: Path, *extra: str, model: str = "stfpm") -> dict:
    from anomaly_kd.pipeline import run

    return run(compose_config(_overrides(root, *extra, model=model), out))


@pytest.fixture(scope="module")
def native_folder(tmp_path_factory) -> Path:
    """80x80 images (and masks) for a model at 64 px."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = tmp_path_factory.mktemp("native")
    return make_synthetic_mvtec(root, "widget", n_train=6, n_test_good=3, n_test_defect=4, size=80)


def test_eval_resolution_is_validated(tmp_path):
    from anomaly_kd.pipeline import validate_config

    cfg = compose_config(["eval_resolution=full"], tmp_path)
    with pytest.raises(UserError, match="eval_resolution='full'"):
        validate_config(cfg)
    assert compose_config([], tmp_path).eval_resolution == "model"


@pytest.mark.slow
def test_native_resolution_equals_metrics_by_hand(native_folder, tmp_path):
    from anomaly_kd.data.images import load_mask
    from anomaly_kd.metrics import aupro, dice, pixel_auroc
    from anomaly_kd.pipeline import build_datamodule, build_model

    results = _run(native_folder, tmp_path / "native", "eval_resolution=native")
    saved = json.loads((tmp_path / "native" / "results.json").read_text())
    assert saved["eval_resolution"] == "native"
    metrics = saved["metrics"]

    # by hand: the tested weights, the same batches, each map upsampled to its 80x80 mask
    cfg = compose_config(_overrides(native_folder), tmp_path / "by_hand")
    datamodule, model = build_datamodule(cfg), build_model(cfg)
    ckpt = torch.load(results["tested_checkpoint"], map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    maps, masks = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            low, _ = model._maps_and_scores(batch["image"])
            assert low.shape[-2:] == (64, 64)
            for amap, path, mask_path in zip(low, batch["path"], batch["mask_path"]):
                up = F.interpolate(amap[None], size=(80, 80), mode="bilinear", align_corners=False)
                maps.append(up[0, 0].numpy())
                masks.append(load_mask(mask_path) if mask_path else np.zeros((80, 80), bool))
    maps, masks = np.stack(maps), np.stack(masks)
    assert masks.any() and metrics["n_images"] == len(maps) == 7
    assert metrics["pixel_auroc"] == pytest.approx(pixel_auroc(maps, masks), abs=1e-9)
    assert metrics["aupro"] == pytest.approx(aupro(maps, masks, 0.3), abs=1e-9)
    assert metrics["dice_val_thr"] == pytest.approx(dice(maps, masks, metrics["pixel_threshold_val"]), abs=1e-9)
    assert metrics["dice_test_f1_thr"] == pytest.approx(dice(maps, masks, metrics["test_f1_threshold"]), abs=1e-9)

    # the same weights at model resolution: other pixel numbers, same image scores
    model_res = _run(native_folder, tmp_path / "model", "train=false", f"ckpt_path={results['tested_checkpoint']}")
    assert json.loads((tmp_path / "model" / "results.json").read_text())["eval_resolution"] == "model"
    assert model_res["metrics"]["image_auroc"] == metrics["image_auroc"]
    assert model_res["metrics"]["pixel_auroc"] != metrics["pixel_auroc"]


@pytest.mark.parametrize("name", ["stfpm", "stfpm_ensemble", "simple_student", "reverse_distillation"])
def test_maps_are_float32_under_autocast(name):
    from anomaly_kd.models import get_model_class

    torch.manual_seed(0)
    model = get_model_class(name)(pretrained=False).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        maps, scores = model._maps_and_scores(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            maps_bf16, scores_bf16 = model._maps_and_scores(images)
    assert maps_bf16.dtype == scores_bf16.dtype == torch.float32
    assert torch.equal(maps, maps_bf16) and torch.equal(scores, scores_bf16)


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory) -> dict:
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = make_synthetic_mvtec(tmp_path_factory.mktemp("prec"), "widget", n_train=15, n_test_good=3,
                                n_test_defect=4, size=64)
    results = _run(root, tmp_path_factory.mktemp("fp32") / "run", "trainer.max_epochs=2")
    results["root"] = root
    return results


@pytest.mark.slow
def test_bf16_mixed_test_of_fp32_weights_is_exactly_fp32(fp32_run, tmp_path):
    """Lightning's bf16 plugin wraps test_step in autocast: maps and metrics stay float32."""
    again = _run(fp32_run["root"], tmp_path / "bf16", "train=false", f"ckpt_path={fp32_run['tested_checkpoint']}",
                 "trainer.precision=bf16-mixed")
    for key in ("image_auroc", "pixel_auroc", "aupro", "dice_val_thr", "test_f1_threshold"):
        assert again["metrics"][key] == fp32_run["metrics"][key], key


@pytest.mark.slow
def test_bf16_mixed_trains_within_tolerance_of_fp32(fp32_run, tmp_path):
    bf16 = _run(fp32_run["root"], tmp_path / "bf16", "trainer.max_epochs=2", "trainer.precision=bf16-mixed")
    assert bf16["reproducibility"]["precision"] == "bf16-mixed" and bf16["epochs_trained"] == 2
    for key, tolerance in BF16_TOLERANCE.items():
        assert bf16["metrics"][key] == pytest.approx(fp32_run["metrics"][key], abs=tolerance), key
