"""The memory layout a model runs in: one rule for training, testing, ``predict`` and benchmarks.

``channels_last`` (NHWC) computes the same maps as NCHW on other kernels (equal to float
round-off); on the CPU it was measured to pay (benchmarks/channels_last.py: 1.4-1.7x per training
step, 1.4-1.85x per inference batch of 32; 1.3-1.7x at predict's batch of 8), on GPUs it has not
been measured yet, so ``auto`` leaves it off there.
"""

from __future__ import annotations

from anomaly_kd.errors import UserError


def check_layout_mode(mode: object, key: str = "model.channels_last") -> None:
    """One error naming ``key`` unless ``mode`` is true, false or ``auto``."""
    if mode not in (True, False, "auto"):
        raise UserError(f"{key}={mode} must be true, false or auto.")


def channels_last_on(mode: object, device_type: str, key: str = "model.channels_last") -> bool:
    """Whether ``mode`` (true / false, or ``auto`` = on for the CPU only) puts a model on
    ``device_type`` in channels_last; anything else is one error naming ``key``."""
    check_layout_mode(mode, key)
    return device_type == "cpu" if mode == "auto" else bool(mode)
