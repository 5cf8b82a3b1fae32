"""The LightningModule base every method shares: validation statistics and the test loop.

A method subclasses :class:`AnomalyModule` and implements

- ``training_step`` and ``configure_optimizers`` (plain Lightning), and
- ``anomaly_map(images) -> (maps, scores)``: images ``[B, 3, H, W]`` in [0, 1]; maps
  ``[B, 1, H, W]`` float32 at the input resolution (larger = more anomalous) and image scores ``[B]``.

The base class then provides:

- validation on held-out *normal* training images: the mean anomaly map (``val/map_mean``, the
  STFPM authors' checkpoint criterion) and the thresholds derived from validation normals only
  (``image_threshold``, ``pixel_threshold``: the ``threshold_quantile`` quantile of their image
  scores and pixel scores). They are buffers, so each checkpoint carries the thresholds of its own
  weights. Methods that need more statistics from validation normals (e.g. score normalisation)
  override :meth:`calibrate`.
- the test loop: maps and scores go into one compact :class:`AnomalyMetricState`; at the end of the
  epoch the metrics are computed once over the whole test set and kept in ``self.test_results``.
  Per-image scores are kept in ``self.test_scores`` for reports.

Batches are dicts with ``image``, ``label``, ``mask``, ``path``, ``mask_path``, ``defect`` (see
``anomaly_kd.data``); nothing before the metrics reads ``label`` or ``mask`` of test data.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch

from anomaly_kd.metrics import AnomalyMetricState, quantile_threshold


class AnomalyModule(pl.LightningModule):
    #: metric Lightning's ModelCheckpoint monitors to pick the weights that are tested (None: last)
    checkpoint_monitor: str | None = "val/map_mean"
    checkpoint_mode: str = "min"
    #: data.image_size must be a multiple of this (the stride of the deepest features)
    input_multiple: int = 1

    def __init__(self, threshold_quantile: float = 0.99, fpr_limit: float = 0.3):
        super().__init__()
        if not 0.0 < threshold_quantile <= 1.0:
            raise ValueError("threshold_quantile must be in (0, 1]")
        self.threshold_quantile = threshold_quantile
        self.fpr_limit = fpr_limit
        self.has_masks = True  # set from the datamodule by the pipeline
        self.register_buffer("image_threshold", torch.tensor(float("nan")))
        self.register_buffer("pixel_threshold", torch.tensor(float("nan")))
        self._val_maps: list[torch.Tensor] = []
        self._val_scores: list[torch.Tensor] = []
        self.metric_state: AnomalyMetricState | None = None
        self.test_results: dict[str, Any] = {}
        self.test_scores: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- to implement per method
    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.anomaly_map(images)

    def _maps_and_scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps and scores in float32 whatever the training precision."""
        device_type = images.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            maps, scores = self.anomaly_map(images.float())
        return maps.float(), scores.float()

    # ---------------------------------------------------------------- validation (normals only)
    def on_validation_epoch_start(self) -> None:
        self._val_maps, self._val_scores = [], []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        maps, scores = self._maps_and_scores(batch["image"])
        self._val_maps.append(maps.detach().cpu())
        self._val_scores.append(scores.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_maps:
            return
        maps = torch.cat(self._val_maps)
        scores = torch.cat(self._val_scores)
        maps, scores = self._gather_val(maps, scores)
        self.calibrate(maps, scores)
        self.log("val/map_mean", maps.mean().item(), prog_bar=True, batch_size=len(scores))
        self.log("val/score_mean", scores.mean().item(), batch_size=len(scores))
        self._val_maps, self._val_scores = [], []

    def _gather_val(self, maps: torch.Tensor, scores: torch.Tensor):
        if self.trainer is None or self.trainer.world_size <= 1:
            return maps, scores
        gathered = self.all_gather({"maps": maps.to(self.device), "scores": scores.to(self.device)})
        return gathered["maps"].flatten(0, 1).cpu(), gathered["scores"].flatten(0, 1).cpu()

    def calibrate(self, maps: torch.Tensor, scores: torch.Tensor) -> None:
        """Statistics from validation normals: here the image and pixel thresholds."""
        q = self.threshold_quantile
        self.image_threshold.fill_(quantile_threshold(scores.numpy(), q))
        self.pixel_threshold.fill_(quantile_threshold(maps.numpy().ravel(), q))

    # ---------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        self.metric_state = AnomalyMetricState(has_masks=self.has_masks, fpr_limit=self.fpr_limit)
        self.test_results, self.test_scores = {}, []

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        maps, scores = self._maps_and_scores(batch["image"])
        maps_cpu, scores_cpu = maps.detach().cpu(), scores.detach().cpu()
        labels = batch["label"].detach().cpu()
        masks = batch["mask"].detach().cpu() if self.has_masks else None
        self.metric_state.update(maps_cpu, scores_cpu, labels, masks)
        for path, defect, label, score in zip(batch["path"], batch["defect"], labels, scores_cpu):
            self.test_scores.append(
                {"path": path, "defect": defect, "label": int(label), "score": float(score)}
            )
        return {"maps": maps_cpu, "scores": scores_cpu}

    def on_test_epoch_end(self) -> None:
        results = self.metric_state.compute(
            pixel_threshold=_finite_or_none(self.pixel_threshold),
            image_threshold=_finite_or_none(self.image_threshold),
        )
        results["image_threshold_val"] = _finite_or_none(self.image_threshold)
        results["pixel_threshold_val"] = _finite_or_none(self.pixel_threshold)
        self.test_results = results
        for key, value in results.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.log(f"test/{key}", float(value), batch_size=1)

    # ---------------------------------------------------------------- predict / export
    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        maps, scores = self._maps_and_scores(batch["image"])
        return {"maps": maps, "scores": scores}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What export/predict need besides the weights: the registered model name (to rebuild
        the class) and the training image size (set by the pipeline; None if unknown)."""
        from anomaly_kd.models import model_name_of

        cls = type(self)
        size = getattr(self, "image_size", None)
        checkpoint["anomaly_kd"] = {
            "format": 1,
            "model": model_name_of(cls),
            "class_path": f"{cls.__module__}:{cls.__qualname__}",
            "image_size": int(size) if size is not None else None,
        }


def _finite_or_none(value: torch.Tensor | float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return int(
        sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
    )


__all__ = ["AnomalyModule", "count_parameters"]
