"""``python -m anomaly_kd.predict ckpt=<run>/checkpoints/best.ckpt input=<image or folder>``.

Runs the checkpoint's model on one image or on every image directly inside a folder (sorted by
name; png, jpg/jpeg, bmp, tif/tiff; hidden files skipped; not recursive) and writes, in
``output_dir`` (default ``<run>/predict/<input name>``):

- ``scores.csv``: ``path, score, threshold, is_anomalous`` per image; ``is_anomalous`` is 1 when
  ``score >= threshold`` (the comparison the metrics use), else 0. The threshold is the
  checkpoint's ``image_threshold`` (the ``threshold_quantile`` quantile of the image scores of the
  validation normals) unless ``threshold=`` is given; when the checkpoint has none (validation
  never ran) the scores are still written, ``threshold`` and ``is_anomalous`` are left empty and a
  warning is logged.
- ``overlays/<stem>.png`` (``<name>.png``, e.g. ``a.jpg.png``, when two inputs share a stem):
  image | anomaly map | blend, at the model's input size, framed red (anomalous), green (normal)
  or grey (no threshold) under a caption such as ``anomalous: score 1.23 >= threshold 0.98``.
  Colour scale (``overlay_scale``): ``threshold`` (default) runs from the lowest map value over all
  predicted images to the checkpoint's ``pixel_threshold`` (the quantile of validation-normal
  pixels): red = at or above the pixel threshold, and the same pixel value has the same colour in
  every image of the call; ``minmax`` (and the fallback when the checkpoint has no pixel threshold)
  runs from the lowest to the highest map value over all predicted images.
- ``predict.json``: model, checkpoint, image size, thresholds, colour range, counts, layout.

``channels_last`` (``auto``: on for the CPU, as in training; see
:mod:`anomaly_kd.models.components.layout`) runs the model in the NHWC memory layout: the same
scores to float round-off, faster on the CPU.

Images are read as in training (:mod:`anomaly_kd.data.images`: grey/RGBA/16-bit handled, bilinear
antialiased resize to the model's ``image_size``); an unreadable file stops the command with a
one-line error naming it before the model runs.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont

from anomaly_kd.data.images import IMAGE_EXTENSIONS, image_size_of, image_tensor, list_images, load_rgb
from anomaly_kd.errors import UserError, exit_on_user_error
from anomaly_kd.inference import LoadedCheckpoint, load_checkpoint, require_checkpoint
from anomaly_kd.metrics.thresholds import finite_or_none
from anomaly_kd.models.components.layout import channels_last_on, check_layout_mode
from anomaly_kd.reporting.overlay_figure import overlay_panel

log = logging.getLogger("anomaly_kd.predict")

CSV_COLUMNS = ("path", "score", "threshold", "is_anomalous")
COLOURS = {True: (214, 39, 40), False: (44, 160, 44), None: (127, 127, 127)}  # anomalous/normal/unknown
BORDER = 4


def list_inputs(value: str | Path | None) -> list[Path]:
    """One image file, or the image files directly inside a folder (sorted by name)."""
    if value in (None, ""):
        raise UserError("No input given: pass input=/path/to/image.png or input=/path/to/folder.")
    path = Path(str(value)).expanduser()
    if path.is_dir():
        images = list_images(path)
        if not images:
            kinds = ", ".join(sorted({e.lstrip(".") for e in IMAGE_EXTENSIONS}))
            raise UserError(f"No images ({kinds}) in folder {path}: pass a folder of images or one image file.")
        return images
    if path.is_file():
        return [path]
    raise UserError(f"Input {path} not found: pass input= an image file or a folder of images.")


def overlay_names(paths: list[Path]) -> list[str]:
    """``<stem>.png``, or ``<name>.png`` for inputs whose stems collide."""
    stems = [p.stem for p in paths]
    return [f"{p.stem if stems.count(p.stem) == 1 else p.name}.png" for p in paths]


def decision(score: float, threshold: float) -> bool | None:
    return None if not math.isfinite(threshold) else bool(score >= threshold)


def caption(score: float, threshold: float) -> str:
    verdict = decision(score, threshold)
    if verdict is None:
        return f"score {score:.4g} (no threshold)"
    if verdict:
        return f"anomalous: score {score:.4g} >= threshold {threshold:.4g}"
    return f"normal: score {score:.4g} < threshold {threshold:.4g}"


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow without sized default fonts
        return ImageFont.load_default()


def decorated_panel(panel: np.ndarray, text: str, verdict: bool | None) -> Image.Image:
    """The overlay panel under a caption, framed in the decision's colour."""
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    text_h = bottom - top + 6
    height, width = panel.shape[:2]
    inner_w = max(width, right - left + 8)
    canvas = Image.new(
        "RGB", (inner_w + 2 * BORDER, height + text_h + 2 * BORDER), COLOURS[verdict]
    )
    draw = ImageDraw.Draw(canvas)
    draw.rectangle(
        [BORDER, BORDER, BORDER + inner_w - 1, BORDER + height + text_h - 1], fill=(255, 255, 255)
    )
    ink = COLOURS[verdict] if verdict is not None else (0, 0, 0)
    draw.text((BORDER + 4, BORDER + 3 - top), text, fill=ink, font=font)
    canvas.paste(Image.fromarray(panel), (BORDER, BORDER + text_h))
    return canvas


def _load_batch(paths: list[Path], size: int) -> torch.Tensor:
    return torch.stack([image_tensor(load_rgb(p), size) for p in paths])


def colour_range(low: float, high: float, pixel_threshold: float, scale: str) -> tuple[float, float]:
    """(value drawn blue, value drawn red) for the overlays."""
    top = high
    if scale == "threshold" and math.isfinite(pixel_threshold) and pixel_threshold > low:
        top = pixel_threshold
    return low, top if top > low else low + 1e-12


def _format(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Scores, overlays and summary for ``cfg.input``; returns the summary (``predict.json``)."""
    ckpt = require_checkpoint(cfg.get("ckpt"))
    scale = str(cfg.get("overlay_scale") or "threshold")
    if scale not in ("threshold", "minmax"):
        raise UserError(f"overlay_scale={scale} is not supported: use threshold or minmax.")
    batch_size = int(cfg.get("batch_size") if cfg.get("batch_size") is not None else 8)
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size} must be >= 1.")
    paths = list_inputs(cfg.get("input"))
    for path in paths:  # fail on an unreadable file before any work is done
        image_size_of(path)

    layout = cfg.get("channels_last", "auto")
    check_layout_mode(layout, key="channels_last")  # like the options above: before the checkpoint is read
    given = cfg.get("threshold")
    try:
        given_threshold = float(given) if given is not None else None
    except (TypeError, ValueError):
        raise UserError(f"threshold={given} is not a number: pass an image-score threshold or leave it out.") from None

    loaded: LoadedCheckpoint = load_checkpoint(ckpt, cfg.get("image_size"), cfg.get("device", "auto"))
    nhwc = channels_last_on(layout, loaded.device.type, key="channels_last")
    if nhwc:  # the same maps to float round-off, faster on the CPU (as in training and testing)
        loaded.model.use_channels_last()
    threshold = given_threshold if given_threshold is not None else loaded.image_threshold
    if not math.isfinite(threshold):
        log.warning(
            "Checkpoint %s has no image threshold (validation never ran): scores are written, "
            "is_anomalous is left empty; pass threshold=<score> to decide.",
            loaded.path,
        )
    source = Path(str(cfg.input)).expanduser().resolve()
    output_dir = Path(str(cfg.output_dir)).expanduser() if cfg.get("output_dir") else (
        loaded.run_dir / "predict" / (source.name if source.is_dir() else source.stem)
    )
    output_dir = output_dir.resolve()
    write_overlays = bool(cfg.get("overlays", True))
    (output_dir / "overlays" if write_overlays else output_dir).mkdir(parents=True, exist_ok=True)

    size, n = loaded.image_size, len(paths)
    scores = np.empty(n, dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="anomaly_kd_predict_") as tmp:
        maps = np.lib.format.open_memmap(Path(tmp) / "maps.npy", mode="w+", dtype=np.float32, shape=(n, size, size))
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                chunk = paths[start : start + batch_size]
                images = _load_batch(chunk, size).to(loaded.device)
                if nhwc:
                    images = images.contiguous(memory_format=torch.channels_last)
                batch_maps, batch_scores = loaded.model._maps_and_scores(images)
                maps[start : start + len(chunk)] = batch_maps[:, 0].cpu().numpy()
                scores[start : start + len(chunk)] = batch_scores.cpu().numpy()
        low, high = float(maps.min()), float(maps.max())
        blue, red = colour_range(low, high, loaded.pixel_threshold, scale)
        names = overlay_names(paths)
        if write_overlays:
            for i, (path, name) in enumerate(zip(paths, names)):
                image = image_tensor(load_rgb(path), size).permute(1, 2, 0).numpy()
                amap = (np.asarray(maps[i]) - blue) / (red - blue)
                panel = overlay_panel(image, None, amap)
                verdict = decision(float(scores[i]), threshold)
                decorated_panel(panel, caption(float(scores[i]), threshold), verdict).save(
                    output_dir / "overlays" / name
                )
        del maps

    with open(output_dir / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for path, score in zip(paths, scores):
            verdict = decision(float(score), threshold)
            writer.writerow([str(path), _format(score), _format(threshold), "" if verdict is None else int(verdict)])

    n_anomalous = int((scores >= threshold).sum()) if math.isfinite(threshold) else None
    summary = {
        **loaded.metadata(),
        "input": str(source),
        "output_dir": str(output_dir),
        "n_images": n,
        "n_anomalous": n_anomalous,
        "threshold": finite_or_none(threshold),
        "threshold_source": "threshold=" if given is not None else "checkpoint image_threshold",
        "overlay_scale": scale,
        "channels_last": nhwc,
        "colour_range": [blue, red],
        "map_range": [low, high],
    }
    (output_dir / "predict.json").write_text(json.dumps(summary, indent=2) + "\n")
    decided = (
        f"{n_anomalous} anomalous (score >= {threshold:.4g})" if n_anomalous is not None else "no threshold"
    )
    print(f"Predicted {n} image(s) with {loaded.name}: {decided}. Scores and overlays: {output_dir}")
    return summary


@hydra.main(version_base="1.3", config_path="pkg://anomaly_kd.conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(predict, cfg)


if __name__ == "__main__":
    main()
