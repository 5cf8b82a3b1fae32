"""Anomaly-detection metrics: exact, fast, numpy/scipy only (torch tensors are accepted, not needed).

Functional API (numpy arrays or torch tensors; maps/masks [N,H,W] or [N,1,H,W]):
:func:`image_auroc`, :func:`pixel_auroc`, :func:`roc_curve` (module ``roc``); :func:`aupro`,
:func:`pro_curve` (module ``pro``); :func:`image_ap`, :func:`pixel_ap` (module
``average_precision``); :func:`rd4ad_pro`, the RD4AD authors' per-image PRO (module ``pro_rd4ad``,
not the MVTec AUPRO); :func:`dice`, :func:`f1_optimal_threshold`, :func:`image_f1`,
:func:`quantile_threshold` (module ``thresholds``). They raise ``ValueError`` with a one-line
message instead of returning NaN. :class:`AnomalyMetricState` accumulates a test epoch and
computes them all at once (module ``state``). Pixel metrics also take images of different sizes
(native resolution): a list of per-image arrays ``[H_i,W_i]`` or a :class:`RaggedImages`.
"""

from ._inputs import RaggedImages
from .average_precision import image_ap, pixel_ap
from .pro import aupro, pro_curve
from .pro_rd4ad import rd4ad_pro
from .roc import image_auroc, pixel_auroc, roc_curve
from .state import AnomalyMetricState
from .thresholds import dice, f1_optimal_threshold, image_f1, quantile_threshold

__all__ = [
    "AnomalyMetricState",
    "RaggedImages",
    "aupro",
    "dice",
    "f1_optimal_threshold",
    "image_ap",
    "image_auroc",
    "image_f1",
    "pixel_ap",
    "pixel_auroc",
    "pro_curve",
    "rd4ad_pro",
    "quantile_threshold",
    "roc_curve",
]
