"""Lightning callbacks of anomaly_kd (overlays, metric plots, W&B extras) and the W&B logger."""

from anomaly_kd.callbacks.nan_guard import NonFiniteLossError, NonFiniteLossGuard
from anomaly_kd.callbacks.output_folder import OutputFolderCheck
from anomaly_kd.callbacks.overlays import OverlayWriter
from anomaly_kd.callbacks.plots import MetricPlots
from anomaly_kd.callbacks.seeding import EpochSeeder
from anomaly_kd.callbacks.wandb_extras import WandbExtras, WandbRunLogger

__all__ = ["EpochSeeder", "MetricPlots", "NonFiniteLossError", "NonFiniteLossGuard", "OutputFolderCheck", "OverlayWriter", "WandbExtras", "WandbRunLogger"]
