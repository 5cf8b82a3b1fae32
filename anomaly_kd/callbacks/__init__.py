"""Lightning callbacks of anomaly_kd (overlays, ...)."""

from anomaly_kd.callbacks.overlays import OverlayWriter

__all__ = ["OverlayWriter"]
