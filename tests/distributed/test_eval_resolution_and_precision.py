"""eval_resolution=native (maps upsampled to the original mask size), float32 maps whatever the
training precision, and what bf16-mixed training does by construction.

What a bf16-mixed training *learns* is not compared with fp32: the difference depends on the CPU's
kernels (a tolerance that passed on one machine failed on another). What holds everywhere: the
student runs under autocast in bfloat16 during training, the losses stay finite, and evaluating the
same weights in bf16-mixed gives exactly the fp32 metrics (maps are computed in float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from anomaly_kd.errors import UserError
from tests.helpers import FAST, compose_config

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
    from anomaly_kd.config_checks import validate_config

    cfg = compose_config(["eval_resolution=full"], tmp_path)
    with pytest.raises(UserError, match="eval_resolution='full'"):
        validate_config(cfg)
    assert compose_config([], tmp_path).eval_resolution == "model"


@pytest.mark.slow
def test_native_resolution_equals_metrics_by_hand(native_folder, tmp_path):
    from anomaly_kd.data.images import load_mask
    from anomaly_kd.metrics import aupro, dice, pixel_auroc
    from anomaly_kd.trainer_setup import apply_channels_last, build_datamodule, build_model

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
    # the run's own layout decision on the CPU (same kernels, same bits)
    apply_channels_last(cfg, model, pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False))
    maps, masks = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            batch = model.on_after_batch_transfer(batch, 0)
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


class _Recorder(pl.Callback):
    """Records the dtype of the student's output in training steps (and in validation, where the
    maps are computed in float32 on purpose) and every training loss."""

    def __init__(self):
        self.dtypes: dict[str, set[torch.dtype]] = {"train": set(), "validation": set()}
        self.losses: list[float] = []
        self._stage = "validation"

    def _record(self, _module, _inputs, output):
        self.dtypes[self._stage].add(output[0].dtype)

    def on_fit_start(self, trainer, pl_module):
        self._handle = pl_module.model.student.register_forward_hook(self._record)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._stage = "train"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self._stage = "validation"

    def on_fit_end(self, trainer, pl_module):
        self._handle.remove()


@pytest.mark.slow
def test_bf16_mixed_training_runs_the_student_in_bfloat16_with_finite_losses(fp32_run, tmp_path):
    from anomaly_kd.trainer_setup import build_datamodule, build_model, build_trainer

    cfg = compose_config(_overrides(fp32_run["root"], "trainer.max_epochs=2", "trainer.precision=bf16-mixed"),
                         tmp_path / "bf16")
    model, recorder = build_model(cfg), _Recorder()
    trainer = build_trainer(cfg, model, tmp_path / "bf16")
    trainer.callbacks.append(recorder)
    trainer.fit(model, datamodule=build_datamodule(cfg))
    assert trainer.precision == "bf16-mixed" and trainer.current_epoch == 2
    assert recorder.dtypes["train"] == {torch.bfloat16}  # autocast covers the student's forward
    assert recorder.dtypes["validation"] == {torch.float32}  # maps (and the checkpoint rule) in float32
    assert len(recorder.losses) == 2 * 3  # 12 training normals in batches of 4, two epochs
    assert all(np.isfinite(recorder.losses))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed: weights stay float32
