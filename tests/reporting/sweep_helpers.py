"""Helpers of the sweep/report tests (import as tests.reporting.sweep_helpers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import FAST


def fast_overrides(data_dir: Path) -> list[str]:
    return ["model=stfpm", "data=mvtec", f"paths.data_dir={data_dir}", "model.pretrained=false", *FAST]


def cli(args: list[str], cwd: Path, env_extra: dict | None = None, module: str = "anomaly_kd.run",
        timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""
