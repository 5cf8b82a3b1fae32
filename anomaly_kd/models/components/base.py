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
  Per-image scores are kept in ``self.test_scores`` for reports. ``eval_resolution`` (set by the
  pipeline) is ``"model"`` (maps and masks at the model's input size) or ``"native"``: each map is
  upsampled (bilinear, align_corners=False) to its image's original size and scored against the
  original mask, as the official MVTec AD evaluation does. The thresholds from validation normals
  are computed at model resolution in both cases.
- DDP: validation and test sets are split between the processes by the datamodule (test without
  padding: every image is scored once; validation in equal blocks whose repeats are dropped here),
  items tagged with their data-set ``index``. At the end of the epoch the statistics are gathered
  from every process and put back in data-set order, so thresholds, ``test_results`` and
  ``test_scores`` are identical on every rank and equal to a single-process run's (rank 0
  computes the metrics and broadcasts them). With ``results_handoff`` set (the pipeline does it
  under ddp_spawn, whose workers cannot return the module's state), rank 0 also writes
  ``test_results`` and ``test_scores`` to that JSON file.

Batches are dicts with ``image``, ``label``, ``mask``, ``path``, ``mask_path``, ``defect``, ``index``
(see ``anomaly_kd.data.images``): uint8 from the loader, made float32 on the device by
:meth:`AnomalyModule.on_after_batch_transfer`; nothing before the metrics reads ``label`` or
``mask`` of test data.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from anomaly_kd.data.images import batch_to_float, image_to_float, native_mask
from anomaly_kd.metrics import AnomalyMetricState, quantile_threshold
from anomaly_kd.metrics.thresholds import finite_or_none

EVAL_RESOLUTIONS = ("model", "native")

# Under DDP the val/ and test/ values logged here are already global (gathered, or broadcast from
# rank 0): Lightning's advice to sync them across devices does not apply.
warnings.filterwarnings(
    "ignore", message=r".*self\.log\('(val|test)/.*sync_dist=True.*", category=PossibleUserWarning
)
# The datamodules define no transfer hook: the module's on_after_batch_transfer is the one meant.
warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer` in `LightningModule`.*")


class AnomalyModule(pl.LightningModule):
    #: metric Lightning's ModelCheckpoint monitors to pick the weights that are tested (None: last)
    checkpoint_monitor: str | None = "val/map_mean"
    checkpoint_mode: str = "min"
    #: data.image_size must be a multiple of this (the stride of the deepest features)
    input_multiple: int = 1
    #: networks and images in NHWC (set by :meth:`use_channels_last`, ``model.channels_last``)
    channels_last: bool = False

    def __init__(self, threshold_quantile: float = 0.99, fpr_limit: float = 0.3):
        super().__init__()
        if not 0.0 < threshold_quantile <= 1.0:
            raise ValueError("threshold_quantile must be in (0, 1]")
        self.threshold_quantile = threshold_quantile
        self.fpr_limit = fpr_limit
        self.has_masks = True  # set from the datamodule by the pipeline
        self.eval_resolution = "model"  # set from the config by the pipeline: model | native
        self.rd4ad_pro = False  # set from the config by the pipeline: also the RD4AD authors' per-image PRO
        self.results_handoff: str | None = None  # ddp_spawn: where rank 0 writes the test results
        self.checkpoint_epoch: int | None = None  # epoch of the weights loaded last from a checkpoint (on_load_checkpoint)
        self.register_buffer("image_threshold", torch.tensor(float("nan")))
        self.register_buffer("pixel_threshold", torch.tensor(float("nan")))
        self._val_maps: list[torch.Tensor] = []
        self._val_scores: list[torch.Tensor] = []
        self._val_index: list[np.ndarray] = []
        self._test_index: list[np.ndarray] = []
        self.metric_state: AnomalyMetricState | None = None
        self.test_results: dict[str, Any] = {}
        self.test_scores: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- to implement per method
    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.anomaly_map(images)

    def compile_networks(self, **options: Any) -> None:
        """``torch.compile`` every network of ``self.model`` in place (``nn.Module.compile``: the
        state-dict keys, hence checkpoints, are unchanged); ``model.compile=true`` in the config."""
        for network in _networks(self.model):
            network.compile(**options)

    def use_channels_last(self) -> None:
        """Networks and input images in the channels_last (NHWC) memory layout: the same maths on
        other kernels (maps equal to float round-off); ``model.channels_last`` in the config."""
        self.channels_last = True
        for network in _networks(self.model):
            network.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The loaders give uint8 images and masks (4x fewer bytes to move); they become float32
        here, on the device, before any step or callback sees the batch (channels_last when the
        networks are)."""
        batch = batch_to_float(batch)
        if self.channels_last and isinstance(batch, dict):
            image = batch.get("image")
            if isinstance(image, torch.Tensor) and image.dim() == 4:
                batch["image"] = image.contiguous(memory_format=torch.channels_last)
        return batch

    def _maps_and_scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps and scores in float32 whatever the training precision (uint8 images, e.g. straight
        from a loader, are made float32 in [0, 1] first)."""
        device_type = images.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            maps, scores = self.anomaly_map(image_to_float(images).float())
        return maps.float(), scores.float()

    # ---------------------------------------------------------------- validation (normals only)
    def on_validation_epoch_start(self) -> None:
        self._val_maps, self._val_scores, self._val_index = [], [], []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        maps, scores = self._maps_and_scores(batch["image"])
        self._val_index.append(_batch_index(batch, self._val_index))
        self._val_maps.append(maps.detach().cpu())
        self._val_scores.append(scores.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_maps and self._world_size() <= 1:
            return
        maps, scores = _cat(self._val_maps), _cat(self._val_scores)
        maps, scores = self._gather_val(maps, scores, _cat_index(self._val_index))
        self._val_maps, self._val_scores, self._val_index = [], [], []
        if not len(scores):
            return
        self.calibrate(maps, scores)
        self.log("val/map_mean", maps.mean().item(), prog_bar=True, batch_size=len(scores))
        self.log("val/score_mean", scores.mean().item(), batch_size=len(scores))

    def _gather_val(self, maps: torch.Tensor, scores: torch.Tensor, index: np.ndarray | None = None):
        """All ranks' validation maps and scores, each image once, in data-set order (the shards
        may differ in size; the repeats that pad them are dropped by ``index``)."""
        if self._world_size() <= 1:
            return maps, scores
        if index is None:
            index = np.arange(len(scores))
        parts = _all_gather_object((index, maps.numpy(), scores.numpy()))
        parts = [p for p in parts if len(p[0])] or parts[:1]  # a rank may have had no batch
        index = _global_index([p[0] for p in parts])
        _, first = np.unique(index, return_index=True)  # first copy of each item, by index
        maps = np.concatenate([p[1] for p in parts])[first] if len(first) else maps.numpy()[:0]
        scores = np.concatenate([p[2] for p in parts])[first]
        return torch.from_numpy(np.ascontiguousarray(maps)), torch.from_numpy(np.ascontiguousarray(scores))

    def calibrate(self, maps: torch.Tensor, scores: torch.Tensor) -> None:
        """Statistics from validation normals: here the image and pixel thresholds."""
        q = self.threshold_quantile
        self.image_threshold.fill_(quantile_threshold(scores.numpy(), q))
        self.pixel_threshold.fill_(quantile_threshold(maps.numpy().ravel(), q))

    # ---------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        if self.eval_resolution not in EVAL_RESOLUTIONS:
            raise ValueError(f"eval_resolution must be one of {EVAL_RESOLUTIONS}, got {self.eval_resolution!r}")
        self.metric_state = AnomalyMetricState(has_masks=self.has_masks, fpr_limit=self.fpr_limit)
        self.test_results, self.test_scores, self._test_index = {}, [], []

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        maps, scores = self._maps_and_scores(batch["image"])
        maps_cpu, scores_cpu = maps.detach().cpu(), scores.detach().cpu()
        labels = batch["label"].detach().cpu()
        self._test_index.append(_batch_index(batch, self._test_index))
        if not self.has_masks:
            self.metric_state.update(None, scores_cpu, labels, None)
        elif self.eval_resolution == "native":
            masks = [native_mask(p, m) for p, m in zip(batch["path"], batch["mask_path"])]
            self.metric_state.update(_upsample(maps, masks), scores_cpu, labels, masks)
        else:
            self.metric_state.update(maps_cpu, scores_cpu, labels, batch["mask"].detach().cpu())
        for path, defect, label, score in zip(batch["path"], batch["defect"], labels, scores_cpu):
            self.test_scores.append(
                {"path": path, "defect": defect, "label": int(label), "score": float(score)}
            )
        return {"maps": maps_cpu, "scores": scores_cpu}

    def on_test_epoch_end(self) -> None:
        distributed = self._world_size() > 1
        if distributed:
            self._gather_test()
        results = None
        if not distributed or self.trainer.is_global_zero:
            results = self.metric_state.compute(
                pixel_threshold=finite_or_none(self.pixel_threshold),
                image_threshold=finite_or_none(self.image_threshold),
                rd4ad_pro=bool(self.rd4ad_pro),
            )
            results["image_threshold_val"] = finite_or_none(self.image_threshold)
            results["pixel_threshold_val"] = finite_or_none(self.pixel_threshold)
            results.update(self._data_set_metrics(results))
        if distributed:
            box = [results]
            torch.distributed.broadcast_object_list(box, src=0)
            results = box[0]
        self.test_results = results
        if self.results_handoff and (not distributed or self.trainer.is_global_zero):
            _write_json(Path(self.results_handoff), {"test_results": results, "test_scores": self.test_scores})
        for key, value in results.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.log(f"test/{key}", float(value), batch_size=1)

    def _data_set_metrics(self, results: dict[str, Any]) -> dict[str, Any]:
        """What the datamodule adds to the standard metrics (none for most data sets):

        - ``test_metrics(state, indices) -> dict``: metrics of its own (MVTec LOCO's ``spro``) from
          the state of the test images ``indices`` (data-set positions, in the state's order);
        - ``test_subsets() -> {name: indices}``: every metric again on each subset of the test set,
          under ``subsets`` (MVTec LOCO: ``logical``, ``structural``, ``all``).

        The state holds the test set in data-set order (one process, or after the DDP gather).
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        extra = getattr(datamodule, "test_metrics", None)
        subsets = getattr(datamodule, "test_subsets", None)
        state = self.metric_state
        thresholds = {"pixel_threshold": finite_or_none(self.pixel_threshold),
                      "image_threshold": finite_or_none(self.image_threshold), "rd4ad_pro": bool(self.rd4ad_pro)}

        def with_extra(metrics: dict[str, Any], sub_state: AnomalyMetricState, indices) -> dict[str, Any]:
            added = dict(extra(sub_state, [int(i) for i in indices]))
            metrics["notes"] = list(metrics.get("notes", [])) + list(added.pop("notes", []))
            return {**metrics, **added}

        out: dict[str, Any] = {}
        if extra is not None:
            out = with_extra({"notes": results.get("notes", [])}, state, range(state.scores.size))
        if subsets is not None:
            out["subsets"] = {}
            for name, indices in subsets().items():
                sub_state = state.take(indices)
                metrics = sub_state.compute(**thresholds)
                out["subsets"][name] = with_extra(metrics, sub_state, indices) if extra is not None else metrics
        return out

    def _gather_test(self) -> None:
        """Replace this rank's metric state and score rows by the whole test set's, each image
        once, in data-set order (the same on every rank)."""
        index = _cat_index(self._test_index)
        parts = _all_gather_object((index, self.metric_state.state_arrays(), self.test_scores))
        index = _global_index([p[0] for p in parts])
        states = [AnomalyMetricState.from_arrays(**p[1], fpr_limit=self.fpr_limit) for p in parts]
        rows = [row for p in parts for row in p[2]]
        _, first = np.unique(index, return_index=True)
        self.metric_state = AnomalyMetricState.merge(states).take(first)
        self.test_scores = [rows[i] for i in first]
        self._test_index = [index[first]]

    def _world_size(self) -> int:
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1:
            return 1
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return 1
        return int(trainer.world_size)

    # ---------------------------------------------------------------- predict / export
    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        maps, scores = self._maps_and_scores(batch["image"])
        return {"maps": maps, "scores": scores}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.checkpoint_epoch = checkpoint.get("epoch")  # results.json's tested_epoch

    def loaded_epochs(self) -> int | list[int] | None:
        """The training epoch (from 0, as logs/metrics.csv counts) of the weights loaded from a
        checkpoint; None before any was loaded."""
        return self.checkpoint_epoch

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


def _networks(module: torch.nn.Module):
    """The networks called by ``module``'s methods: its children, list/dict containers opened."""
    for child in module.children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)):
            yield from _networks(child)
        else:
            yield child


def _batch_index(batch: dict, earlier: list[np.ndarray]) -> np.ndarray:
    """Data-set indices of a batch's items: the loader's ``index`` (DDP shards), else the
    position in the (sequential, single-process) loader, as ``-1 - position``."""
    if "index" in batch:
        return np.asarray(torch.as_tensor(batch["index"]).cpu(), dtype=np.int64).reshape(-1)
    start = sum(len(i) for i in earlier)
    return -1 - np.arange(start, start + len(batch["image"]), dtype=np.int64)


def _global_index(parts: list[np.ndarray]) -> np.ndarray:
    """The gathered indices of every rank. Items of a loader without ``index`` (not from an
    AnomalyDataModule: shards unknown, maybe padded) are kept all, in rank order, with a warning."""
    if all((p >= 0).all() for p in parts):
        return np.concatenate(parts)
    from pytorch_lightning.utilities import rank_zero_warn

    rank_zero_warn("the evaluation loader gives no item `index` under DDP: results gathered in rank order, "
                   "items a padding sampler repeated are counted twice; use an AnomalyDataModule.")
    return np.arange(sum(len(p) for p in parts), dtype=np.int64)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0)


def _cat_index(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _all_gather_object(obj: Any) -> list[Any]:
    """``obj`` of every rank (any picklable object, sizes may differ), in rank order."""
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def _upsample(maps: torch.Tensor, masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each map [1, h, w] resized (bilinear, align_corners=False, float32) to its mask's shape."""
    out = []
    with torch.autocast(device_type=maps.device.type, enabled=False):
        for amap, mask in zip(maps.float(), masks):
            size = tuple(int(n) for n in mask.shape)
            if tuple(amap.shape[-2:]) != size:
                amap = F.interpolate(amap[None], size=size, mode="bilinear", align_corners=False)[0]
            out.append(amap[0].detach().cpu().numpy())
    return out


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return int(
        sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
    )


__all__ = ["AnomalyModule", "count_parameters"]
