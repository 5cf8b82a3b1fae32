"""``results.json`` and the console table of one run."""

from __future__ import annotations

import csv
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

METRIC_COLUMNS = (
    ("image_auroc", "image AUROC"),
    ("image_ap", "image AP"),
    ("pixel_auroc", "pixel AUROC"),
    ("pixel_ap", "pixel AP"),
    ("aupro", "AUPRO"),
    ("rd4ad_pro", "PRO (RD4AD authors' per-image)"),
    ("dice_val_thr", "Dice (val-normal threshold)"),
    ("dice_test_f1_thr", "Dice (threshold from test labels)"),
    ("image_f1_test_thr", "image F1 (threshold from test labels)"),
    ("test_f1_threshold", "threshold from test labels (max image F1)"),
)
#: optional metrics: left out of the console table when the run did not compute them
OPTIONAL_METRICS = ("rd4ad_pro",)

_PACKAGES = (
    "anomaly_kd", "torch", "torchvision", "pytorch-lightning", "hydra-core", "timm", "numpy",
    "scipy", "scikit-image",
)


def config_value(cfg: Any, key: str) -> Any:
    """``cfg``'s value at the dotted ``key``, or None when it is missing or cannot be resolved
    (results of a failed or half-written job must still be readable)."""
    if cfg is None:
        return None
    from omegaconf import OmegaConf

    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    except Exception:
        return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: Any) -> str:
    """What ran the job: the GPU's name for a CUDA device, else the CPU's (``device``: a torch.device)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_header(cfg: Any, output_dir: Path, eval_resolution: str, epochs_trained: int) -> dict[str, Any]:
    """The first keys of results.json: what ran, where its files are."""
    return {
        "status": "ok",
        "model": cfg.model.get("name"),
        "data": cfg.data.get("name"),
        "category": str(cfg.category),
        "seed": int(cfg.seed),
        "output_dir": str(output_dir),
        "epochs_trained": epochs_trained,
        "eval_resolution": eval_resolution,
    }


def run_provenance(cfg: Any, trainer: Any, model_summary: dict | None, timing: dict, resumed_from: str | None,
                   command: str, overrides: list[str] | None) -> dict[str, Any]:
    """The last keys of results.json: what reproduces this result: the command (overrides), the
    seed, the checkpoint resumed from, and what decides float results on CPU (thread count) or GPU
    (deterministic algorithms)."""
    import torch
    from omegaconf import OmegaConf

    record: dict[str, Any] = {} if model_summary is None else {"model_summary": model_summary}
    record.update({
        "timing": timing,
        "versions": package_versions(),
        "command": command,
        "overrides": overrides,
        "resumed_from": resumed_from,
        "device": device_name(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "reproducibility": {
            "seed": int(cfg.seed),
            "deterministic": cfg.trainer.get("deterministic"),
            "accelerator": cfg.trainer.get("accelerator"),
            "precision": cfg.trainer.get("precision"),
            "torch_threads": torch.get_num_threads(),
        },
        "config": OmegaConf.to_container(cfg, resolve=True),
    })
    return record


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON to a temporary file in the same folder, then rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_scores_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "defect", "label", "score"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_scores_csv_atomic(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """scores.csv through a temporary file in the same folder, then a rename: never half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_scores_csv(tmp, rows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def format_metric(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def results_table(results: dict[str, Any]) -> str:
    """A small Markdown table of the headline metrics of one run."""
    metrics = results.get("metrics", {})
    title = f"{results.get('model')} / {results.get('data')} / {results.get('category')}"
    lines = [f"| metric ({title}) | value |", "|---|---|"]
    for key, label in METRIC_COLUMNS:
        if key in OPTIONAL_METRICS and key not in metrics:
            continue
        lines.append(f"| {label} | {format_metric(metrics.get(key))} |")
    return "\n".join(lines)
