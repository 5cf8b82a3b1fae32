"""PNG overlays of test images, one file per image (drawn by
:func:`anomaly_kd.reporting.overlay_figure.overlay_figure`): the image; the image with the
ground-truth outline and the outline of the region predicted anomalous at the validation pixel
threshold (``pixel_threshold``, from validation normals); the anomaly map; the blend. The title
gives the image score against the validation image threshold, the decision and the true label.

All maps are scaled with ONE range, the minimum and maximum over the whole test set, so colours
compare across images (a per-image normalisation makes every normal image look anomalous).
Which images are drawn: the first ``max_images // 2`` anomalous and the first normal images in
test order (the labels choose what to draw, never how anything is scored).

Under DDP each process sees only its share of the test set: the range is the minimum and maximum
gathered from every process, and rank 0 draws the same images a single process would (each rank's
first candidates are gathered and chosen again by data-set index).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from anomaly_kd.metrics.thresholds import finite_or_none
from anomaly_kd.reporting.overlay_figure import overlay_figure, overlay_title


class OverlayWriter(pl.Callback):
    def __init__(self, dirpath: str, max_images: int = 16):
        self.dirpath = Path(dirpath)
        self.max_images = int(max_images)
        self._reset()

    def _reset(self) -> None:
        self._kept: list[dict] = []
        self._n_by_label = {0: 0, 1: 0}
        self._low, self._high = float("inf"), float("-inf")
        self._seen = 0

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not outputs or self.max_images <= 0:
            return
        maps = outputs["maps"]
        self._low = min(self._low, float(maps.min()))
        self._high = max(self._high, float(maps.max()))
        quota = self._quota()
        labels = batch["label"].tolist()
        # data-set positions: the loader's `index` under DDP, else the running count
        index = batch["index"].tolist() if "index" in batch else list(range(self._seen, self._seen + len(labels)))
        self._seen += len(labels)
        for i, label in enumerate(labels):
            label = int(label > 0)
            if self._n_by_label[label] >= quota[label]:
                continue
            self._n_by_label[label] += 1
            self._kept.append(
                {
                    "index": int(index[i]),
                    "label": label,
                    "image": batch["image"][i].detach().float().cpu().permute(1, 2, 0).numpy(),
                    "mask": batch["mask"][i, 0].detach().cpu().numpy() if pl_module.has_masks else None,
                    "map": maps[i, 0].numpy(),
                    "path": batch["path"][i],
                    "defect": str(batch["defect"][i]) if "defect" in batch else None,
                    "score": float(outputs["scores"][i]),
                }
            )

    def _quota(self) -> dict[int, int]:
        return {1: (self.max_images + 1) // 2, 0: self.max_images // 2}

    def _gather(self, trainer) -> None:
        """Under DDP: the global range, and on every rank the images one process would draw."""
        if trainer.world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, (self._low, self._high, self._kept))
        self._low = min(p[0] for p in parts)
        self._high = max(p[1] for p in parts)
        quota, counts, kept, seen = self._quota(), {0: 0, 1: 0}, [], set()
        for item in sorted((item for p in parts for item in p[2]), key=lambda item: item["index"]):
            if item["index"] in seen or counts[item["label"]] >= quota[item["label"]]:
                continue  # a repeat (more processes than images) or past the quota
            seen.add(item["index"])
            counts[item["label"]] += 1
            kept.append(item)
        self._kept = kept

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.max_images > 0:
            self._gather(trainer)  # every rank takes part, whatever it kept
        if not self._kept or not trainer.is_global_zero:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        pixel_threshold = finite_or_none(getattr(pl_module, "pixel_threshold", None))
        image_threshold = finite_or_none(getattr(pl_module, "image_threshold", None))
        for k, item in enumerate(self._kept):
            stem = "_".join(Path(str(item["path"])).with_suffix("").parts[-2:])
            title = overlay_title(item["score"], image_threshold, item["label"], item.get("defect"))
            overlay_figure(self.dirpath / f"{k:03d}_{stem}.png", item["image"], item["mask"], item["map"],
                           (self._low, self._high), pixel_threshold, title)
        pl_module.overlay_range = (self._low, self._high)


__all__ = ["OverlayWriter"]
