"""Weights & Biases: one run per job, one summary run per sweep.

- :class:`WandbRunLogger` (``logger=wandb``): Lightning's ``WandbLogger`` whose ``group`` defaults
  to the sweep's name (the last folder of ``hydra.sweep.dir``) inside a multirun, so that the
  jobs of a sweep are grouped; no group for a single run unless one is given.
- :func:`log_run_config`: the job's resolved config as the W&B run config (called by the pipeline).
- :class:`WandbExtras` (in ``callbacks=default``; does nothing without a WandbLogger): after the
  test, the metrics as run summary (``test/<metric>``), a ``wandb.Table`` of per-image scores
  (``test/scores``), anomaly-map overlays as ``wandb.Image`` (``test/overlays``: image | ground
  truth | map | blend, one colour scale over the test set) and the test images with the
  ground-truth mask and the thresholded map as W&B masks (``test/masks``).

The sweep's own summary run (one more run in the same group, ``job_type=sweep-summary``) is
:func:`anomaly_kd.reporting.wandb_sweep.log_sweep_summary`, called by the Hydra callback.

Training curves come from Lightning itself (everything the model logs). The entry point finishes
the W&B run after each job, so every job of a sweep has its own run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import OmegaConf
from pytorch_lightning.loggers import WandbLogger

from anomaly_kd.metrics.thresholds import finite_or_none
from anomaly_kd.reporting.overlay_figure import overlay_panel

log = logging.getLogger("anomaly_kd")


def sweep_name() -> str | None:
    """The sweep's name (last folder of ``hydra.sweep.dir``) inside a multirun job, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return None
        return Path(str(HydraConfig.get().sweep.dir)).name or None
    except Exception:
        return None


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class WandbRunLogger(WandbLogger):
    """``WandbLogger`` with ``group`` defaulting to the sweep name in a multirun."""

    def __init__(self, *args: Any, group: str | None = None, tags: Any = None, **kwargs: Any):
        group = group or sweep_name()
        tags = [str(t) for t in (_plain(tags) or [])]
        kwargs = {key: _plain(value) for key, value in kwargs.items()}
        super().__init__(*args, group=group, tags=tags, **kwargs)


def wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    return [lg for lg in getattr(trainer, "loggers", []) if isinstance(lg, WandbLogger)]


def log_run_config(trainer: pl.Trainer, cfg) -> None:
    """Put the job's resolved config into the W&B run config (rank 0; no-op without W&B)."""
    loggers = wandb_loggers(trainer)
    if not loggers or not trainer.is_global_zero:
        return
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        resolved = OmegaConf.to_container(cfg, resolve=False)
    for logger in loggers:
        logger.experiment.config.update(resolved, allow_val_change=True)


class WandbExtras(pl.Callback):
    """Per-image scores, overlays with masks and test metrics to W&B (no-op without W&B)."""

    def __init__(self, max_images: int = 8, log_scores: bool = True):
        self.max_images = int(max_images)
        self.log_scores = bool(log_scores)
        self._reset()

    def _reset(self) -> None:
        self._kept: list[dict] = []
        self._n_by_label = {0: 0, 1: 0}
        self._low, self._high = float("inf"), float("-inf")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not wandb_loggers(trainer) or not outputs or self.max_images <= 0:
            return
        maps = outputs["maps"]
        self._low = min(self._low, float(maps.min()))
        self._high = max(self._high, float(maps.max()))
        quota = {1: (self.max_images + 1) // 2, 0: self.max_images // 2}
        for i, label in enumerate(batch["label"].tolist()):
            label = int(label > 0)
            if self._n_by_label[label] >= quota[label]:
                continue
            self._n_by_label[label] += 1
            self._kept.append({
                "image": batch["image"][i].detach().float().cpu().permute(1, 2, 0).numpy(),
                "mask": batch["mask"][i, 0].detach().cpu().numpy() if pl_module.has_masks else None,
                "map": maps[i, 0].numpy(),
                "path": str(batch["path"][i]),
                "label": label,
                "score": float(outputs["scores"][i]),
            })

    def on_test_end(self, trainer, pl_module) -> None:
        loggers = wandb_loggers(trainer)
        if not loggers or not trainer.is_global_zero:
            return
        import wandb

        results = getattr(pl_module, "test_results", {}) or {}
        summary = {f"test/{k}": v for k, v in results.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        payload: dict[str, Any] = {}
        if self.log_scores and getattr(pl_module, "test_scores", None):
            columns = ["path", "defect", "label", "score"]
            rows = [[str(r.get(c)) if c in ("path", "defect") else r.get(c) for c in columns]
                    for r in pl_module.test_scores]
            payload["test/scores"] = wandb.Table(columns=columns, data=rows)
        if self._kept:
            payload.update(self._images(wandb, finite_or_none(getattr(pl_module, "pixel_threshold", None))))
        for logger in loggers:
            run = logger.experiment
            run.summary.update(summary)
            if payload:
                run.log(payload)
        self._reset()

    def _images(self, wandb, pixel_threshold: float | None) -> dict[str, list]:
        span = max(self._high - self._low, 1e-12)
        overlays, masked = [], []
        for item in self._kept:
            caption = f"{Path(item['path']).parent.name}/{Path(item['path']).name} score={item['score']:.4g}"
            amap = (item["map"] - self._low) / span
            overlays.append(wandb.Image(overlay_panel(item["image"], item["mask"], amap), caption=caption))
            rgb = (np.clip(item["image"], 0, 1) * 255).astype(np.uint8)
            masks = {}
            if item["mask"] is not None:
                masks["ground_truth"] = {"mask_data": (item["mask"] > 0).astype(np.uint8),
                                         "class_labels": {0: "normal", 1: "defect"}}
            if pixel_threshold is not None:
                masks["prediction"] = {"mask_data": (item["map"] >= pixel_threshold).astype(np.uint8),
                                       "class_labels": {0: "normal", 1: "anomalous (map >= val threshold)"}}
            masked.append(wandb.Image(rgb, caption=caption, masks=masks or None))
        return {"test/overlays": overlays, "test/masks": masked}


__all__ = ["WandbExtras", "WandbRunLogger", "log_run_config", "sweep_name", "wandb_loggers"]
