"""W&B at the end of a sweep: one more run in the sweep's group (``job_type=sweep-summary``)
holding the results table (``results``), the failed jobs (``failed_jobs``) and the mean rows in
its summary, each published column with its source in the run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from anomaly_kd.reporting.paper_values import source_note
from anomaly_kd.reporting.sweep_jobs import relative_path
from anomaly_kd.reporting.sweep_rows import METRICS, format_rows, table_paper_columns


def _select(config, key: str) -> Any:
    """A value of the sweep's config as plain Python (None when absent or unresolvable)."""
    try:
        value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except Exception:
        return None


def log_sweep_summary(config, tables) -> str | None:
    """One W&B run (``job_type=sweep-summary``) with the sweep's results table; returns its id."""
    import wandb

    sweep_dir = Path(tables.sweep_dir)
    group = _select(config, "logger.wandb.group") or sweep_dir.name
    tags = [str(t) for t in (_select(config, "logger.wandb.tags") or [])] + ["sweep-summary"]
    offline = bool(_select(config, "logger.wandb.offline"))
    rows = format_rows(tables.rows)
    papers = table_paper_columns(tables.rows)
    # each published column <metric>_paper_<source>: who published it and how it was computed
    paper_sources = {source: source_note(source) for source in dict.fromkeys(s for _, s in papers)}
    run = wandb.init(
        project=_select(config, "logger.wandb.project") or "anomaly_kd",
        entity=_select(config, "logger.wandb.entity"),
        group=str(group),
        job_type="sweep-summary",
        name=f"{group}-summary",
        tags=tags,
        dir=str(sweep_dir),
        mode="offline" if offline else None,
        config={"sweep_dir": str(sweep_dir.resolve()), "n_jobs": len(tables.jobs), "n_failed": len(tables.failed),
                "paper_sources": paper_sources},
    )
    try:
        payload: dict[str, Any] = {}
        if rows:
            columns = list(rows[0])
            payload["results"] = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
        if tables.failed:
            columns = ["model", "data", "category", "seed", "status", "error", "folder"]
            payload["failed_jobs"] = wandb.Table(columns=columns, data=[
                [j.model, j.data, j.category, j.seed, j.status, j.error, relative_path(j.path, sweep_dir)]
                for j in tables.failed
            ])
        if payload:
            run.log(payload)
        summary: dict[str, Any] = {"n_jobs": len(tables.jobs), "n_failed": len(tables.failed)}
        for row in tables.rows:
            if not row.is_mean:
                continue
            prefix = "/".join(str(p) for p in (row.model, row.data, row.variant) if p)
            for metric in METRICS:
                if row.mean.get(metric) is not None:
                    summary[f"{prefix}/mean/{metric}"] = row.mean[metric]
            for key, value in row.paper.items():  # <metric>_paper_<source>, sources in the config
                if value is not None:
                    summary[f"{prefix}/mean/{key}"] = value
        run.summary.update(summary)
        return run.id
    finally:
        run.finish(exit_code=1 if tables.failed else 0)
