"""The jobs of a sweep, read from their folders: each ``results.json`` (or, for a job that never
wrote one, its Hydra record ``.hydra/``), and the *variant* of each job: the combination of the
other overrides that differ between the jobs (e.g. ``model.lr=0.1`` vs ``model.lr=0.4``), so that
such jobs are never averaged together."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from anomaly_kd.reporting.results import config_value

#: overrides that identify a row; any other override that differs between jobs makes a variant
IDENTITY_KEYS = ("model", "data", "category", "seed", "data.category", "data.seed")
MISSING_ERROR = "no results.json: the job was killed, timed out, or has not finished"


@dataclass
class Job:
    """One job of a sweep, read from its folder."""

    path: Path
    status: str  # "ok", "failed", or "missing" (no results.json)
    model: str | None = None
    data: str | None = None
    category: str | None = None
    seed: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    variant: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _is_skipped_dir(name: str) -> bool:
    return (name.startswith(".") and name != ".hydra") or name == "wandb"


def find_job_dirs(sweep_dir: str | os.PathLike) -> list[Path]:
    """Folders holding a ``results.json`` or a Hydra job record (``.hydra/config.yaml``)."""
    root = Path(sweep_dir)
    found: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here.name == ".hydra":
            if "config.yaml" in filenames:
                found.add(here.parent)
            dirnames[:] = []
            continue
        if "results.json" in filenames:
            found.add(here)
        dirnames[:] = sorted(d for d in dirnames if not _is_skipped_dir(d))
    return sorted(found)


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.load(path)
    except Exception:
        return None


def _as_seed(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def load_job(job_dir: str | os.PathLike) -> Job:
    job_dir = Path(job_dir)
    results: dict[str, Any] | None = None
    error: str | None = None
    results_path = job_dir / "results.json"
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text())
        except (OSError, ValueError) as exc:
            error = f"results.json unreadable: {exc}"
    hydra_cfg = _load_yaml(job_dir / ".hydra" / "config.yaml") if (job_dir / ".hydra").is_dir() else None
    overrides = _load_yaml(job_dir / ".hydra" / "overrides.yaml") if hydra_cfg is not None else None
    overrides = list(overrides) if overrides is not None else list((results or {}).get("overrides") or [])

    def ident(key: str, cfg_key: str) -> Any:
        if results and results.get(key) is not None:
            return results[key]
        return config_value(hydra_cfg, cfg_key)

    category = ident("category", "category")
    if results is None:
        status, error = "failed" if error else "missing", error or MISSING_ERROR
    else:
        status = "ok" if results.get("status") == "ok" else "failed"
        if status == "failed":
            error = results.get("error") or f"status {results.get('status')!r}"
    return Job(
        path=job_dir,
        status=status,
        model=ident("model", "model.name"),
        data=ident("data", "data.name"),
        category=None if category is None else str(category),
        seed=_as_seed(ident("seed", "seed")),
        metrics=dict((results or {}).get("metrics") or {}),
        error=error,
        overrides=[str(o) for o in overrides],
    )


def _override_key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("~+"), value


def assign_variants(jobs: list[Job]) -> None:
    """Set ``job.variant`` from the overrides (other than model/data/category/seed) that differ."""
    parsed = [dict(_override_key_value(o) for o in job.overrides) for job in jobs]
    keys = sorted({k for p in parsed for k in p} - set(IDENTITY_KEYS))
    varying = [k for k in keys if len({p.get(k) for p in parsed}) > 1]
    for job, p in zip(jobs, parsed):
        job.variant = " ".join(f"{k}={p[k]}" for k in varying if k in p)


def collect_jobs(sweep_dir: str | os.PathLike) -> list[Job]:
    jobs = [load_job(d) for d in find_job_dirs(sweep_dir)]
    assign_variants(jobs)
    return jobs

def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to the sweep folder ``root`` when inside it, else as given."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
