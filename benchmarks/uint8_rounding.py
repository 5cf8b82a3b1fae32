"""Effect on the test metrics of rounding the resized images to uint8 (issue 12, data.cache).

Tests ONE checkpoint twice on the same data: with the images as the loaders give them now
(resized on floats, rounded once to 1/255, ``uint8``) and as they were before (the float resize
result, not rounded). Everything else (weights, thresholds, masks, metrics code) is shared.

    python benchmarks/uint8_rounding.py <checkpoint> <overrides of the run that made it...>

e.g. after
    python -m anomaly_kd.run model=stfpm data=mvtec category=tire paths.data_dir=../shared/data/mvtec3d_tire256 \
        model.backbone=efficientnet_lite0 'model.layers=[block1,block2,block4]' data.image_size=128 \
        trainer.max_epochs=3 trainer=cpu hydra.run.dir=/tmp/tire_run
    python benchmarks/uint8_rounding.py /tmp/tire_run/checkpoints/best.ckpt model=stfpm data=mvtec ... (same overrides)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly_kd.data.images import load_mask, load_rgb, resize_mask  # noqa: E402
from anomaly_kd.data.mvtec import ImageFolderDataset  # noqa: E402
from anomaly_kd.pipeline import run  # noqa: E402
from tests.helpers import compose_config  # noqa: E402

KEYS = ("image_auroc", "pixel_auroc", "aupro", "dice_val_thr", "dice_test_f1_thr")


def float_decode(self, index):
    """The decode before issue 12: float32 [3, S, S] in [0, 1], the resize result not rounded."""
    s = self.samples[index]
    pixels = load_rgb(s.path)
    t = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
    if tuple(t.shape[-2:]) != (self.image_size, self.image_size):
        size = (self.image_size, self.image_size)
        t = F.interpolate(t[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp_(0, 1)
    mask = load_mask(s.mask_path) if s.mask_path else None
    return t.contiguous(), (None if mask is None else resize_mask(mask, self.image_size))


def test_metrics(ckpt: str, overrides: list[str], out: Path) -> dict:
    cfg = compose_config([*overrides, "train=false", f"ckpt_path={ckpt}", "data.cache=none", "logger=none",
                          "callbacks.overlays.max_images=0"], out)
    return run(cfg)["metrics"]


def main() -> None:
    ckpt, overrides = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        rounded = test_metrics(ckpt, overrides, Path(tmp) / "uint8")
        ImageFolderDataset.decode = float_decode
        unrounded = test_metrics(ckpt, overrides, Path(tmp) / "float")
    rows = {k: {"uint8": rounded[k], "float": unrounded[k], "uint8 - float": rounded[k] - unrounded[k]}
            for k in KEYS if rounded.get(k) is not None}
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
