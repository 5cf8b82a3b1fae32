"""Helpers of the reliability tests (importable as ``tests.reliability.reliability_helpers``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.helpers import FAST, REPO, TINY_MODEL_OVERRIDES

def base_overrides(model: str, data_dir: Path) -> list[str]:
    """A tiny run of ``model`` on the synthetic ``widget`` folder, without the (slow) metric plots."""
    plots = "\nplots:" in (REPO / "conf" / "callbacks" / "default.yaml").read_text()
    return [
        f"model={model}", "data=mvtec", "category=widget", f"paths.data_dir={data_dir}",
        "logger=none", "model.pretrained=false", *FAST, *TINY_MODEL_OVERRIDES.get(model, []),
        *(["callbacks.plots=null"] if plots else []),
    ]


def cli_env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)  # what a user sees: Hydra's short error report
    return env


def start_cli(args: list[str], cwd: Path, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """``python -m anomaly_kd.run <args>`` in the background; stderr is collected."""
    return subprocess.Popen(
        [sys.executable, "-m", "anomaly_kd.run", *args], cwd=cwd, env=cli_env(),
        stdout=stdout, stderr=subprocess.PIPE, text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0, what: str = "") -> None:
    """Poll ``condition()`` every 20 ms until true; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc={proc.returncode}) before {what}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def file_version(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None when absent: Lightning replaces checkpoints by a rename."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def kill(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = state_dict(a), state_dict(b)
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def assert_same_metrics(a: dict, b: dict, tol: float = 1e-6) -> None:
    """Every metric equal within ``tol`` (wall-clock timings excepted)."""
    assert a.keys() == b.keys()
    for key, value in a.items():
        if "seconds" in key:
            continue
        if isinstance(value, float):
            assert abs(value - b[key]) <= tol, (key, value, b[key])
        else:
            assert value == b[key], (key, value, b[key])


SIGTERM, SIGKILL = signal.SIGTERM, signal.SIGKILL
REPO_ROOT = REPO
