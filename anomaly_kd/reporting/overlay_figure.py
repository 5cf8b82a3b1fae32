"""What an overlay of one test image shows, as pure functions of arrays (no Lightning):

- :func:`overlay_panel`: image | ground truth | anomaly map | blend, side by side (W&B, predict);
- :func:`predicted_region` and :func:`region_contours`: the pixels predicted anomalous at the
  validation pixel threshold (``map >= threshold``, the convention of
  :mod:`anomaly_kd.metrics.thresholds`) and the outlines of a binary region, in pixel coordinates;
- :func:`overlay_title`: the image's score against the image threshold, the decision, the truth;
- :func:`overlay_figure`: the PNG of the test overlays: the image with the ground-truth and the
  predicted outlines (legend), the map on the test set's colour scale, the blend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GROUND_TRUTH_COLOUR = "lime"
PREDICTED_COLOUR = "red"


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


def predicted_region(amap: np.ndarray, threshold: float | None) -> np.ndarray | None:
    """Pixels predicted anomalous (``amap >= threshold``, the map in its own units); None without a
    threshold (e.g. a checkpoint that never saw validation normals)."""
    if threshold is None:
        return None
    return np.asarray(amap) >= threshold


def region_contours(region: np.ndarray) -> list[np.ndarray]:
    """Closed outlines of a binary [H, W] region: each an [N, 2] array of (x, y) = (column, row)
    points on the pixel edges (half-way between a pixel inside and one outside), first point
    repeated last; a region touching the border is closed along it."""
    from contourpy import contour_generator

    padded = np.pad(np.asarray(region, dtype=np.float64), 1)
    lines = contour_generator(z=padded).lines(0.5)
    return [np.asarray(line) - 1.0 for line in lines]


def overlay_title(score: float, image_threshold: float | None, label: int, defect: str | None = None) -> str:
    """``score 0.83 / thr 0.61 -> anomalous | true: anomalous (crack)``: the decision is
    ``score >= threshold``; the truth is the test label (and the defect folder, if any). Four
    significant digits, as the score histogram's threshold."""
    truth = "anomalous" if label else "normal"
    if defect and label:
        truth += f" ({defect})"
    if image_threshold is None:
        return f"score {score:.4g} (no image threshold) | true: {truth}"
    decision = "anomalous" if score >= image_threshold else "normal"
    return f"score {score:.4g} / thr {image_threshold:.4g} -> {decision} | true: {truth}"


def overlay_figure(
    path: str | Path,
    image: np.ndarray,
    mask: np.ndarray | None,
    amap: np.ndarray,
    value_range: tuple[float, float],
    pixel_threshold: float | None,
    title: str,
) -> Path:
    """Write one overlay PNG: image | image with outlines (ground truth, predicted at the
    validation pixel threshold) | map | blend. ``amap`` is in the model's units; ``value_range``
    (the test set's minimum and maximum) is the one colour scale of every overlay."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    low, high = value_range
    scaled = (np.asarray(amap) - low) / max(high - low, 1e-12)
    rgb = np.clip(image, 0, 1)
    heat = heatmap(scaled)
    blend = (0.5 * (rgb * 255) + 0.5 * heat).astype(np.uint8)
    height, width = scaled.shape
    inch = max(width, 192) / 100  # each panel at least 192 px wide
    fig = Figure(figsize=(4 * inch, inch * height / width + 0.9), dpi=100)
    axes = fig.subplots(1, 4)
    captions = ["image", "outlines", f"map (test-set scale {low:.4g} to {high:.4g})", "blend"]
    for ax, picture, caption in zip(axes, (rgb, rgb, heat, blend), captions):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.set_axis_off()
    handles = []
    if mask is not None:
        for line in region_contours(np.asarray(mask) > 0):
            axes[1].plot(line[:, 0], line[:, 1], color=GROUND_TRUTH_COLOUR, linewidth=1.2)
        handles.append(Line2D([], [], color=GROUND_TRUTH_COLOUR, label="ground truth"))
    region = predicted_region(amap, pixel_threshold)
    if region is not None:
        for line in region_contours(region):
            axes[1].plot(line[:, 0], line[:, 1], color=PREDICTED_COLOUR, linewidth=1.2)
        handles.append(Line2D([], [], color=PREDICTED_COLOUR,
                              label=f"predicted (map >= val threshold {pixel_threshold:.4g})"))
    else:
        handles.append(Line2D([], [], color="none", label="no pixel threshold: no predicted region"))
    for ax in axes:
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
    fig.suptitle(title, fontsize=9)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.45 / fig.get_figheight(),
                        bottom=0.3 / fig.get_figheight(), wspace=0.04)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


__all__ = ["heatmap", "overlay_figure", "overlay_panel", "overlay_title", "predicted_region", "region_contours"]
