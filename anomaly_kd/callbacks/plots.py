"""Per-run plots of the test set: ``curves.png`` (ROC and PRO curves) and ``score_histogram.png``.

``curves.png``: image-level ROC; with ground-truth masks also the pixel-level ROC and the PRO
curve (per-region overlap against the false-positive rate of normal pixels) with the AUPRO
integration limit (``fpr_limit``) marked and the area that AUPRO measures shaded.
``score_histogram.png``: image scores of normal and anomalous test images, with the image
threshold from validation normals when there is one.

Curves come from :func:`anomaly_kd.metrics.roc_curve` / :func:`~anomaly_kd.metrics.pro_curve`
on the model's :class:`~anomaly_kd.metrics.AnomalyMetricState` (thinned to ``max_points``
thresholds: every point drawn is exact). Metric computation is announced in the log with its
duration, since it can take a while on a full test set.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from anomaly_kd.metrics.thresholds import finite_or_none

log = logging.getLogger("anomaly_kd")

NORMAL_COLOUR, ANOMALOUS_COLOUR = "#1f77b4", "#d62728"


def _roc_panel(ax, scores, labels, title: str, max_points: int, auc: float | None) -> None:
    from anomaly_kd.metrics import roc_curve

    fpr, tpr, _ = roc_curve(scores, labels, max_points=max_points)
    label = f"AUROC {auc:.4f}" if auc is not None else None
    ax.plot(fpr, tpr, color=ANOMALOUS_COLOUR, lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    if label:
        ax.legend(loc="lower right")


def _pro_panel(ax, maps, masks, fpr_limit: float, max_points: int, aupro: float | None) -> None:
    from anomaly_kd.metrics import pro_curve

    fpr, pro = pro_curve(maps, masks, fpr_limit=1.0, max_points=max_points)
    ax.plot(fpr, pro, color=ANOMALOUS_COLOUR, lw=1.5, label="PRO")
    inside = fpr <= fpr_limit
    ax.fill_between(fpr[inside], pro[inside], color=ANOMALOUS_COLOUR, alpha=0.15,
                    label=f"AUPRO@{fpr_limit:g} {aupro:.4f}" if aupro is not None else f"AUPRO@{fpr_limit:g}")
    ax.axvline(fpr_limit, color="black", ls="--", lw=1, label=f"FPR limit {fpr_limit:g}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (normal pixels)",
           ylabel="per-region overlap", title="PRO curve")
    ax.legend(loc="lower right")


def _note(ax, title: str, text: str) -> None:
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9)


def plot_curves(state, path: str | Path, fpr_limit: float = 0.3, metrics: dict | None = None,
                max_points: int = 2000) -> Path:
    """Write the ROC/PRO figure of a filled :class:`AnomalyMetricState` to ``path`` (PNG)."""
    from matplotlib.figure import Figure

    metrics = metrics or {}
    scores, labels = state.scores, state.labels
    with_masks = bool(state.has_masks) and state.maps is not None and state.maps.size > 0
    n_panels = 3 if with_masks else 1
    fig = Figure(figsize=(4.2 * n_panels, 4.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    both_images = 0 < int(labels.sum()) < labels.size
    if both_images:
        _roc_panel(axes[0], scores, labels, "image ROC", max_points, finite_or_none(metrics.get("image_auroc")))
    else:
        _note(axes[0], "image ROC", "undefined: the test set has a single class")
    if with_masks:
        masks = state.masks
        n_anomalous = int(masks.sum())
        if 0 < n_anomalous < masks.size:
            _roc_panel(axes[1], state.maps, masks, "pixel ROC", max_points, finite_or_none(metrics.get("pixel_auroc")))
            _pro_panel(axes[2], state.maps, masks, float(fpr_limit), max_points, finite_or_none(metrics.get("aupro")))
        else:
            for ax, title in zip(axes[1:], ("pixel ROC", "PRO curve")):
                _note(ax, title, "undefined: the masks have no anomalous (or no normal) pixel")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_score_histogram(scores, labels, path: str | Path, threshold: float | None = None) -> Path:
    """Histogram of image scores, normal vs anomalous, on shared bins (PNG)."""
    from matplotlib.figure import Figure

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    fig = Figure(figsize=(5.5, 3.8), dpi=110, layout="constrained")
    ax = fig.subplots()
    if scores.size:
        edges = np.histogram_bin_edges(scores, bins=min(50, max(10, scores.size // 4)))
        for mask, name, colour in ((~labels, "normal", NORMAL_COLOUR), (labels, "anomalous", ANOMALOUS_COLOUR)):
            if mask.any():
                ax.hist(scores[mask], bins=edges, alpha=0.6, color=colour, label=f"{name} (n={int(mask.sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold (val normals) {threshold:.4g}")
    ax.set(xlabel="image anomaly score", ylabel="test images", title="Image scores")
    if scores.size or threshold is not None:  # below the axes: inside, it covered the tallest bars
        fig.legend(loc="outside lower center", ncol=3, fontsize="small", frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_metric_plots(state, dirpath: str | Path, fpr_limit: float = 0.3, metrics: dict | None = None,
                       image_threshold: float | None = None, max_points: int = 2000) -> dict[str, Path]:
    dirpath = Path(dirpath)
    return {
        "curves": plot_curves(state, dirpath / "curves.png", fpr_limit, metrics, max_points),
        "histogram": plot_score_histogram(state.scores, state.labels, dirpath / "score_histogram.png", image_threshold),
    }


def _pixels(state) -> str:
    return f" and {state.maps.size:,} pixels" if state.has_masks and state.maps is not None else ""


class MetricPlots(pl.Callback):
    """Writes ``curves.png`` and ``score_histogram.png`` into ``dirpath`` after each test, logs
    how long the metrics took, and sends the figures to W&B when a WandbLogger is attached."""

    def __init__(self, dirpath: str, max_points: int = 2000, enabled: bool = True):
        self.dirpath = Path(dirpath)
        self.max_points = int(max_points)
        self.enabled = bool(enabled)
        self._start: float | None = None
        self.paths: dict[str, Path] = {}

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        # Lightning calls callbacks before the module's hook, which computes the metrics.
        state = getattr(pl_module, "metric_state", None)
        if state is None:
            return
        self._start = time.perf_counter()
        if trainer.world_size > 1:  # this rank's state holds its shard only until the module gathers
            if trainer.is_global_zero:
                log.info("Gathering the test maps of %d processes and computing the metrics ...", trainer.world_size)
            return
        log.info("Computing the metrics over %d test images%s ...", int(state.scores.size), _pixels(state))

    def on_test_end(self, trainer, pl_module) -> None:
        state = getattr(pl_module, "metric_state", None)
        results = getattr(pl_module, "test_results", {}) or {}
        if self._start is not None:
            seconds = results.get("metric_seconds", time.perf_counter() - self._start)
            if trainer.is_global_zero:
                images = f" over {int(state.scores.size)} test images{_pixels(state)}" if state is not None else ""
                log.info("Metrics%s computed in %.1f s", images, seconds)
            self._start = None
        if not self.enabled or state is None or not trainer.is_global_zero or state.scores.size == 0:
            return
        start = time.perf_counter()
        try:
            self.paths = write_metric_plots(
                state, self.dirpath, float(getattr(pl_module, "fpr_limit", 0.3)), results,
                finite_or_none(getattr(pl_module, "image_threshold", None)), self.max_points,
            )
        except Exception as error:  # a plot must never cost the run its results
            log.warning("could not draw the metric plots: %s", error)
            return
        log.info("Plots in %.1f s: %s", time.perf_counter() - start, ", ".join(str(p) for p in self.paths.values()))
        _log_images_to_wandb(trainer, {f"test/{name}": path for name, path in self.paths.items()})


def _log_images_to_wandb(trainer, images: dict[str, Path]) -> None:
    from pytorch_lightning.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            for key, path in images.items():
                logger.log_image(key=key, images=[str(path)])


__all__ = ["MetricPlots", "plot_curves", "plot_score_histogram", "write_metric_plots"]
