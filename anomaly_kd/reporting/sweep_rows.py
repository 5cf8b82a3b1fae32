"""The rows of a sweep table: per (model, data, variant, category) each metric's mean, sample
standard deviation and count over seeds, a mean row over categories, and the published values of
the same (model, data, category) from :mod:`anomaly_kd.reporting.paper_values`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anomaly_kd.reporting.paper_values import PAPER_DATASETS, column_name, paper_columns, paper_value
from anomaly_kd.reporting.results import METRIC_COLUMNS
from anomaly_kd.reporting.sweep_jobs import Job

METRICS = tuple(key for key, _ in METRIC_COLUMNS)
LABELS = dict(METRIC_COLUMNS)
MVTEC_ALL = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip



@dataclass
class Row:
    """One line of the table: a (model, data, variant, category) over seeds, or their mean row."""

    model: str | None
    data: str | None
    variant: str
    category: str
    seeds_ok: list[int | None] = field(default_factory=list)
    seeds_failed: list[int | None] = field(default_factory=list)
    mean: dict[str, float | None] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    paper: dict[str, float | None] = field(default_factory=dict)  # column_name(metric, source) -> value
    errors: list[str] = field(default_factory=list)
    is_mean: bool = False
    n_categories: int = 0  # mean rows: categories with at least one finished seed
    n_categories_total: int = 0
    per_seed: dict[str, dict[Any, float | None]] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        if self.is_mean:
            if self.n_categories == 0:
                return "failed"
            return "ok" if self.n_categories == self.n_categories_total else "incomplete"
        if not self.seeds_failed:
            return "ok"
        if not self.seeds_ok:
            return "failed"
        return f"{len(self.seeds_failed)} failed"


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _std(values: list[float]) -> float | None:
    """Sample standard deviation (n - 1 in the denominator); None for fewer than two values."""
    return statistics.stdev(values) if len(values) >= 2 else None


def sort_key(value: Any) -> tuple:
    text = "" if value is None else str(value)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def aggregate(jobs: list[Job]) -> list[Row]:
    """Rows per (model, data, variant, category), then a mean row per (model, data, variant)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.model, job.data, job.variant, job.category), []).append(job)
    rows: list[Row] = []
    by_setting: dict[tuple, list[Row]] = {}
    for key in sorted(groups, key=lambda k: tuple(sort_key(v) for v in k)):
        model, data, variant, category = key
        members = sorted(groups[key], key=lambda j: sort_key(j.seed))
        ok = [j for j in members if j.ok]
        row = Row(model, data, variant, str(category), [j.seed for j in ok], [j.seed for j in members if not j.ok])
        row.errors = list(dict.fromkeys(j.error for j in members if not j.ok and j.error))
        for metric in METRICS:
            values = [v for v in (finite_number(j.metrics.get(metric)) for j in ok) if v is not None]
            row.mean[metric] = statistics.fmean(values) if values else None
            row.std[metric] = _std(values)
            row.count[metric] = len(values)
        for metric, source in paper_columns([model]):
            row.paper[column_name(metric, source)] = paper_value(model, data, str(category), metric, source)
        row.per_seed = {metric: {j.seed: finite_number(j.metrics.get(metric)) for j in ok} for metric in METRICS}
        rows.append(row)
        by_setting.setdefault((model, data, variant), []).append(row)
    for (model, data, variant), members in by_setting.items():
        if len(members) < 2:
            continue
        rows.append(_mean_row(model, data, variant, members))
    rows.sort(key=lambda r: (sort_key(r.model), sort_key(r.data), sort_key(r.variant), r.is_mean,
                             sort_key(r.category)))
    return rows


def _mean_row(model, data, variant, members: list[Row]) -> Row:
    row = Row(model, data, variant, "mean", is_mean=True, n_categories_total=len(members))
    row.seeds_ok = [s for m in members for s in m.seeds_ok]
    row.seeds_failed = [s for m in members for s in m.seeds_failed]
    complete = {m.category for m in members if m.seeds_ok}
    row.n_categories = len(complete)
    all_mvtec = data in PAPER_DATASETS and complete >= set(MVTEC_ALL)
    for metric in METRICS:
        means = [m.mean[metric] for m in members if m.mean[metric] is not None]
        row.mean[metric] = statistics.fmean(means) if means else None
        row.count[metric] = len(means)
        # std over seeds of the per-seed mean over categories, seeds present in every category
        per_seed = [m.per_seed[metric] for m in members]
        common = set.intersection(*({k for k, v in d.items() if v is not None} for d in per_seed))
        seed_means = [statistics.fmean(d[s] for d in per_seed) for s in sorted(common, key=sort_key)]
        row.std[metric] = _std(seed_means) if len(means) == len(members) else None
    # a published mean over the 15 categories only compares with a mean over the same 15
    for metric, source in paper_columns([model]):
        row.paper[column_name(metric, source)] = paper_value(model, data, "mean", metric, source) if all_mvtec else None
    return row


def table_paper_columns(rows: list[Row]) -> list[tuple[str, str]]:
    """(metric, source) of the paper columns of these rows: sources reporting a value for a model
    of an MVTec AD row (each shown right after our column of that metric)."""
    return paper_columns(r.model for r in rows if r.data in PAPER_DATASETS)


def format_rows(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Rows as plain dicts (for W&B tables and notebooks)."""
    rows = list(rows)
    out = []
    for row in rows:
        item: dict[str, Any] = {"model": row.model, "data": row.data, "variant": row.variant,
                                "category": row.category, "n_seeds": len(row.seeds_ok),
                                "n_failed": len(row.seeds_failed), "status": row.status}
        for metric in METRICS:
            item[f"{metric}_mean"] = row.mean.get(metric)
            item[f"{metric}_std"] = row.std.get(metric)
        for metric, source in table_paper_columns(rows):
            item[column_name(metric, source)] = row.paper.get(column_name(metric, source))
        out.append(item)
    return out
