"""PNG overlays of test images: image | ground truth | anomaly map, one file per image.

All maps are scaled with ONE range, the minimum and maximum over the whole test set, so colours
compare across images (a per-image normalisation makes every normal image look anomalous).
Which images are drawn: the first ``max_images // 2`` anomalous and the first normal images in
test order (the labels choose what to draw, never how anything is scored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
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

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not outputs or self.max_images <= 0:
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
            self._kept.append(
                {
                    "image": batch["image"][i].detach().float().cpu().permute(1, 2, 0).numpy(),
                    "mask": batch["mask"][i, 0].detach().cpu().numpy() if pl_module.has_masks else None,
                    "map": maps[i, 0].numpy(),
                    "path": batch["path"][i],
                    "score": float(outputs["scores"][i]),
                }
            )

    def on_test_epoch_end(self, trainer, pl_module) -> None:
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
