"""PNG overlays of test images: image | ground truth | anomaly map, one file per image.

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

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image


def heatmap(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8 with matplotlib's jet colormap."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(values, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def overlay_panel(image: np.ndarray, mask: np.ndarray | None, amap: np.ndarray) -> np.ndarray:
    """image [H,W,3] float in [0,1], mask [H,W] binary or None, amap [H,W] in [0,1]."""
    rgb = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    heat = heatmap(amap)
    blend = (0.5 * rgb + 0.5 * heat).astype(np.uint8)
    panels = [rgb]
    if mask is not None:
        gt = rgb.copy()
        edge = mask.astype(bool)
        gt[edge] = (0.5 * gt[edge] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
        panels.append(gt)
    panels += [heat, blend]
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


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
        span = max(self._high - self._low, 1e-12)
        for k, item in enumerate(self._kept):
            amap = (item["map"] - self._low) / span
            panel = overlay_panel(item["image"], item["mask"], amap)
            stem = "_".join(Path(str(item["path"])).with_suffix("").parts[-2:])
            Image.fromarray(panel).save(self.dirpath / f"{k:03d}_{stem}.png")
        pl_module.overlay_range = (self._low, self._high)


__all__ = ["OverlayWriter", "heatmap", "overlay_panel"]
