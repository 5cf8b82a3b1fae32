"""``run(cfg) -> dict``: one job from a composed config, with no Hydra runtime needed.

config -> datamodule -> model -> fit (students learn on train; validation normals give statistics
and thresholds; the checkpoint rule of the method picks the weights) -> test (maps and scores ->
metrics on the whole test set) -> results.json, scores.csv, overlays.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from anomaly_kd.errors import UserError
from anomaly_kd.reporting.results import (
    package_versions,
    results_table,
    write_json_atomic,
    write_scores_csv,
)

log = logging.getLogger(__name__)

# Lightning warnings that are expected here and would only hide the useful ones.
for _pattern in (
    r".*module\(s\) in eval mode.*",  # frozen teachers stay in eval mode on purpose
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*does not have many workers.*",  # num_workers is a data option; 0 is the safe default
    r".*smaller than the logging interval.*",
):
    warnings.filterwarnings("ignore", message=_pattern)


def _without(node: DictConfig, *keys: str) -> DictConfig:
    cfg = OmegaConf.to_container(node, resolve=True)
    for key in keys:
        cfg.pop(key, None)
    return OmegaConf.create(cfg)


def validate_config(cfg: DictConfig) -> None:
    """Reject nonsense values before anything is built or trained."""
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and epochs < 0 and epochs != -1:
        raise UserError(f"trainer.max_epochs={epochs} is negative: give a number of epochs >= 0.")
    limit = cfg.get("fpr_limit", 0.3)
    if not 0.0 < float(limit) <= 1.0:
        raise UserError(f"fpr_limit={limit} is outside (0, 1]: the MVTec default is 0.3.")
    size = cfg.data.get("image_size")
    if size is not None and int(size) <= 0:
        raise UserError(f"data.image_size={size} must be a positive number of pixels.")
    if not cfg.get("train", True) and not cfg.get("ckpt_path"):
        raise UserError("train=false needs a checkpoint to test: pass ckpt_path=/path/to/model.ckpt.")


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    return instantiate(_without(cfg.data, "name"))


def build_model(cfg: DictConfig) -> pl.LightningModule:
    model_cfg = _without(cfg.model, "name")
    model_cfg.fpr_limit = float(cfg.get("fpr_limit", 0.3))
    return instantiate(model_cfg, _convert_="all")


def check_image_size(model: pl.LightningModule, image_size: int) -> None:
    multiple = int(getattr(model, "input_multiple", 1))
    if image_size % multiple:
        raise UserError(
            f"data.image_size={image_size} is not divisible by {multiple}, the stride of this "
            f"model's deepest features: use e.g. {max(multiple, round(image_size / multiple) * multiple)}."
        )


def build_trainer(cfg: DictConfig, model: pl.LightningModule, output_dir: Path) -> pl.Trainer:
    monitor = getattr(model, "checkpoint_monitor", None)
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=getattr(model, "checkpoint_mode", "min"),
        save_top_k=1 if monitor else 0,
        save_last=True,
        enable_version_counter=False,
    )
    callbacks = [checkpoint]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(output_dir),
        _convert_="all",
    )


def _test_checkpoint(cfg: DictConfig, trainer: pl.Trainer, trained: bool) -> str | None:
    if not trained:
        return _resolve_ckpt(cfg.get("ckpt_path"), trainer)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    return best or None  # None: the weights in memory, i.e. those of the last epoch


def _resolve_ckpt(ckpt_path: str | None, trainer: pl.Trainer) -> str | None:
    if ckpt_path in (None, ""):
        return None
    if ckpt_path in ("last", "best"):
        path = Path(trainer.default_root_dir) / "checkpoints" / f"{ckpt_path}.ckpt"
    else:
        path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise UserError(f"Checkpoint {path} not found: check ckpt_path.")
    return str(path)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and/or test one model on one category; returns (and writes) the results dict."""
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)

    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    model.has_masks = bool(getattr(datamodule, "has_masks", True))
    check_image_size(model, int(cfg.data.image_size))
    trainer = build_trainer(cfg, model, output_dir)

    timing: dict[str, float] = {}
    trained = bool(cfg.get("train", True))
    if trained:
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=_resolve_ckpt(cfg.get("ckpt_path"), trainer))
        timing["train_seconds"] = time.perf_counter() - start
        n_train = len(datamodule.train_dataloader().dataset) * max(trainer.current_epoch, 1)
        timing["train_images_per_second"] = n_train / max(timing["train_seconds"], 1e-9)

    results: dict[str, Any] = {
        "status": "ok",
        "model": cfg.model.get("name"),
        "data": cfg.data.get("name"),
        "category": str(cfg.category),
        "seed": int(cfg.seed),
        "output_dir": str(output_dir),
        "epochs_trained": int(trainer.current_epoch),
        "eval_resolution": "model",
    }
    if cfg.get("test", True):
        ckpt = _test_checkpoint(cfg, trainer, trained)
        start = time.perf_counter()
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        timing["test_seconds"] = time.perf_counter() - start
        n_test = len(model.test_scores)
        timing["test_images_per_second"] = n_test / max(timing["test_seconds"], 1e-9)
        results["tested_checkpoint"] = ckpt or "weights after the last training epoch"
        results["metrics"] = model.test_results
        if trainer.is_global_zero:
            write_scores_csv(output_dir / "scores.csv", model.test_scores)
    if hasattr(model, "model_summary"):
        results["model_summary"] = model.model_summary()
    results["timing"] = timing
    results["versions"] = package_versions()
    results["config"] = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "results.json", results)
        if "metrics" in results:
            print("\n" + results_table(results))
        print(f"\nResults, checkpoints and images: {output_dir}")
    return results
