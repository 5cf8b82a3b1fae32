"""Tables of a sweep, from the ``results.json`` of its jobs.

``python -m anomaly_kd.run -m model=stfpm data=mvtec category=bottle,hazelnut seed=0,1,2`` ends by
writing, in the sweep folder:

- ``results.md``: one row per (model, data, [variant,] category) with each metric as
  ``mean ± std`` over seeds, the number of seeds, a mean row over categories, published values
  (MVTec AD, where known: one column per source, right after the column of ours computed the same
  way; source and protocol in the footer), and a "Failed jobs" section with each failed job's
  error line; metric columns no job computed and no source reports are left out;
- ``results.csv``: the same rows, machine-readable (``<metric>_mean``, ``<metric>_std``,
  ``<metric>_n``, ``<metric>_paper_<source>``, ``n_seeds``, ``n_failed``, ``errors``, ...);
- ``jobs.csv``: one row per job (status, seed, metrics, error, folder).

A *variant* is a combination of the other overrides that differ between the jobs (e.g.
``model.lr=0.1`` vs ``model.lr=0.4``): such jobs are never averaged together.

The Hydra callback :class:`SweepReport` (registered in ``conf/hydra/default.yaml``) builds the
tables in ``on_multirun_end`` and makes the sweep exit with status 1 if any job failed;
``python -m anomaly_kd.report <sweep_dir>`` rebuilds them at any time (also for a sweep whose
master process was killed: jobs without ``results.json`` are listed as failed).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from anomaly_kd.reporting.paper_values import (
    PAPER_DATASETS,
    SOURCES,
    column_name,
    paper_columns,
    paper_value,
    source_note,
)
from anomaly_kd.reporting.results import METRIC_COLUMNS, config_value

try:  # Hydra is a dependency, but keep the tables usable without its runtime
    from hydra.experimental.callback import Callback
except Exception:  # pragma: no cover
    Callback = object  # type: ignore[assignment,misc]

log = logging.getLogger("anomaly_kd")

METRICS = tuple(key for key, _ in METRIC_COLUMNS)
LABELS = dict(METRIC_COLUMNS)
#: overrides that identify a row; any other override that differs between jobs makes a variant
IDENTITY_KEYS = ("model", "data", "category", "seed", "data.category", "data.seed")
MISSING_ERROR = "no results.json: the job was killed, timed out, or has not finished"
MVTEC_ALL = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip


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


@dataclass
class SweepTables:
    sweep_dir: Path
    jobs: list[Job]
    rows: list[Row]
    paths: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""

    @property
    def failed(self) -> list[Job]:
        return [job for job in self.jobs if not job.ok]


# ---------------------------------------------------------------------------------------- reading
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


# ---------------------------------------------------------------------------------- aggregation
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _std(values: list[float]) -> float | None:
    """Sample standard deviation (n - 1 in the denominator); None for fewer than two values."""
    return statistics.stdev(values) if len(values) >= 2 else None


def _sort_key(value: Any) -> tuple:
    text = "" if value is None else str(value)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def aggregate(jobs: list[Job]) -> list[Row]:
    """Rows per (model, data, variant, category), then a mean row per (model, data, variant)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.model, job.data, job.variant, job.category), []).append(job)
    rows: list[Row] = []
    by_setting: dict[tuple, list[Row]] = {}
    for key in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k)):
        model, data, variant, category = key
        members = sorted(groups[key], key=lambda j: _sort_key(j.seed))
        ok = [j for j in members if j.ok]
        row = Row(model, data, variant, str(category), [j.seed for j in ok], [j.seed for j in members if not j.ok])
        row.errors = list(dict.fromkeys(j.error for j in members if not j.ok and j.error))
        for metric in METRICS:
            values = [v for v in (_number(j.metrics.get(metric)) for j in ok) if v is not None]
            row.mean[metric] = statistics.fmean(values) if values else None
            row.std[metric] = _std(values)
            row.count[metric] = len(values)
        for metric, source in paper_columns([model]):
            row.paper[column_name(metric, source)] = paper_value(model, data, str(category), metric, source)
        row.per_seed = {metric: {j.seed: _number(j.metrics.get(metric)) for j in ok} for metric in METRICS}
        rows.append(row)
        by_setting.setdefault((model, data, variant), []).append(row)
    for (model, data, variant), members in by_setting.items():
        if len(members) < 2:
            continue
        rows.append(_mean_row(model, data, variant, members))
    rows.sort(key=lambda r: (_sort_key(r.model), _sort_key(r.data), _sort_key(r.variant), r.is_mean,
                             _sort_key(r.category)))
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
        seed_means = [statistics.fmean(d[s] for d in per_seed) for s in sorted(common, key=_sort_key)]
        row.std[metric] = _std(seed_means) if len(means) == len(members) else None
    # a published mean over the 15 categories only compares with a mean over the same 15
    for metric, source in paper_columns([model]):
        row.paper[column_name(metric, source)] = paper_value(model, data, "mean", metric, source) if all_mvtec else None
    return row


# -------------------------------------------------------------------------------------- writing
def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _cell(row: Row, metric: str) -> str:
    mean = row.mean.get(metric)
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {_fmt(row.std.get(metric))}"


def table_paper_columns(rows: list[Row]) -> list[tuple[str, str]]:
    """(metric, source) of the paper columns of these rows: sources reporting a value for a model
    of an MVTec AD row (each shown right after our column of that metric)."""
    return paper_columns(r.model for r in rows if r.data in PAPER_DATASETS)


def _shown_metrics(rows: list[Row], papers: list[tuple[str, str]]) -> list[str]:
    """Metrics with a value in some row or a paper column (e.g. rd4ad_pro only when computed or
    published, pixel metrics not for MNIST alone)."""
    published = {metric for metric, _ in papers}
    return [m for m in METRICS if m in published or any(r.mean.get(m) is not None for r in rows)]


def markdown_table(tables: SweepTables) -> str:
    rows, jobs = tables.rows, tables.jobs
    with_variant = any(r.variant for r in rows)
    papers = table_paper_columns(rows)
    with_paper = bool(papers)
    metrics = _shown_metrics(rows, papers)
    head = ["model", "data"] + (["variant"] if with_variant else []) + ["category", "seeds"]
    for metric in metrics:
        head.append(LABELS[metric])
        head += [f"{SOURCES[source].label}" for m, source in papers if m == metric]
    head.append("status")
    lines = [f"# Results: {tables.sweep_dir.name}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        if row.is_mean:
            seeds = f"{row.n_categories}/{row.n_categories_total} categories"
            category = "**mean**"
        else:
            n_all = len(row.seeds_ok) + len(row.seeds_failed)
            seeds = str(len(row.seeds_ok)) if not row.seeds_failed else f"{len(row.seeds_ok)}/{n_all}"
            category = row.category
        cells = [str(row.model), str(row.data)] + ([row.variant or "–"] if with_variant else [])
        cells += [category, seeds]
        for metric in metrics:
            cells.append(_cell(row, metric))
            for m, source in papers:
                if m == metric:
                    value = row.paper.get(column_name(m, source))
                    cells.append("" if value is None else f"{value:.3f}")
        cells.append(row.status)
        lines.append("| " + " | ".join(cells) + " |")
    failed = tables.failed
    if failed:
        lines += ["", f"## Failed jobs ({len(failed)} of {len(jobs)})", "",
                  "| model | data | category | seed | error | folder |", "|---|---|---|---|---|---|"]
        for job in sorted(failed, key=lambda j: (_sort_key(j.model), _sort_key(j.category), _sort_key(j.seed))):
            error = (job.error or "").replace("|", "\\|")
            lines.append(f"| {job.model} | {job.data} | {job.category} | {job.seed} | {error} | "
                         f"{_relative(job.path, tables.sweep_dir)} |")
    lines += ["", _footer(tables, papers if with_paper else [])]
    return "\n".join(lines) + "\n"


def _footer(tables: SweepTables, papers: list[tuple[str, str]]) -> str:
    notes = [
        "Values: mean ± sample standard deviation (n − 1 denominator) over the seeds whose job "
        "finished; ± n/a where only one seed finished; – where no value exists.",
        "Seeds: the number of finished jobs (finished/all when some failed). Mean row: mean over categories of the per-category means; its ± is the sample standard "
        "deviation over seeds of the per-seed mean over categories (seeds finished in every "
        "category); 'k/n categories' counts the categories with at least one finished seed.",
        "Variants: jobs whose other overrides differ are never averaged together.",
    ]
    if papers:
        sources = list(dict.fromkeys(source for _, source in papers))
        notes.append(
            "Published columns (MVTec AD only), each headed by its source and placed right after the "
            "column of ours computed the same way (the RD4AD PRO only beside our rd4ad_pro, never "
            "beside the MVTec AUPRO; the thesis's Dice only beside our Dice at the test-F1 threshold); "
            "a published mean over the 15 categories is shown only in a mean row that covers all 15. "
            "Sources — " + "; ".join(source_note(s) for s in sources) + "."
        )
    notes.append(
        f"Built from {len(tables.jobs)} job folders in {tables.sweep_dir} "
        f"({datetime.now().astimezone().isoformat(timespec='seconds')}); rebuild with "
        f"`python -m anomaly_kd.report {tables.sweep_dir}`."
    )
    return "\n".join(f"- {note}" for note in notes)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def results_csv(tables: SweepTables) -> str:
    head = ["model", "data", "variant", "category", "n_seeds", "n_failed", "seeds", "status"]
    for metric in METRICS:
        head += [f"{metric}_mean", f"{metric}_std", f"{metric}_n"]
    papers = table_paper_columns(tables.rows)
    head += [column_name(metric, source) for metric, source in papers]
    head += ["errors", "paper_sources"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    for row in tables.rows:
        values = [row.model, row.data, row.variant, row.category, len(row.seeds_ok), len(row.seeds_failed),
                  " ".join(str(s) for s in row.seeds_ok), row.status]
        for metric in METRICS:
            values += [_csv_number(row.mean.get(metric)), _csv_number(row.std.get(metric)), row.count.get(metric, 0)]
        values += [_csv_number(row.paper.get(column_name(m, s))) for m, s in papers]
        sources = dict.fromkeys(s for m, s in papers if row.paper.get(column_name(m, s)) is not None)
        values += [" | ".join(row.errors), " || ".join(source_note(s) for s in sources)]
        writer.writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


def jobs_csv(tables: SweepTables) -> str:
    head = ["model", "data", "variant", "category", "seed", "status", *METRICS, "error", "folder"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    for job in tables.jobs:
        writer.writerow([
            job.model, job.data, job.variant, job.category, job.seed, job.status,
            *[_csv_number(_number(job.metrics.get(m))) for m in METRICS],
            job.error or "", _relative(job.path, tables.sweep_dir),
        ])
    return buffer.getvalue()


def _write_text_atomic(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def build_tables(sweep_dir: str | os.PathLike, write: bool = True) -> SweepTables:
    """Read every job of ``sweep_dir`` and (``write``) write results.md, results.csv, jobs.csv."""
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)
    tables = SweepTables(sweep_dir=sweep_dir, jobs=jobs, rows=aggregate(jobs))
    tables.markdown = markdown_table(tables)
    if write:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        tables.paths = {
            "markdown": _write_text_atomic(sweep_dir / "results.md", tables.markdown),
            "csv": _write_text_atomic(sweep_dir / "results.csv", results_csv(tables)),
            "jobs": _write_text_atomic(sweep_dir / "jobs.csv", jobs_csv(tables)),
        }
    return tables


def failure_summary(tables: SweepTables) -> str:
    failed = tables.failed
    return (f"{len(failed)} of {len(tables.jobs)} jobs failed (see 'Failed jobs' in "
            f"{tables.sweep_dir / 'results.md'})")


# ---------------------------------------------------------------------------- the Hydra callback
def _launcher_target(config: DictConfig) -> str:
    return str(config_value(config, "hydra.launcher._target_") or "")


class SweepReport(Callback):  # type: ignore[misc,valid-type]
    """Hydra callback: refuse impossible launches up front; after the sweep, write the tables,
    log a W&B summary run (with ``logger=wandb``), and exit 1 if any job failed.

    Registered first in ``hydra.callbacks`` so that, Hydra calling ``on_multirun_end`` in reverse
    order, it runs last (its exit would otherwise skip the callbacks after it).
    """

    def __init__(self, exit_on_failure: bool = True, wandb_summary: bool = True, print_table: bool = True):
        self.exit_on_failure = bool(exit_on_failure)
        self.wandb_summary = bool(wandb_summary)
        self.print_table = bool(print_table)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from anomaly_kd.reporting.launch import ddp_multirun_problem

        try:
            problem = ddp_multirun_problem(config, _launcher_target(config))
        except Exception:  # an unresolvable value: each job checks (and reports) it again
            problem = None
        if problem:
            log.error("%s", problem)
            print(f"error: {problem}", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        tables = build_tables(sweep_dir)
        if self.print_table:
            print("\n" + tables.markdown)
        log.info("Sweep tables: %s, %s, %s", *(tables.paths[k] for k in ("markdown", "csv", "jobs")))
        if self.wandb_summary and config_value(config, "logger.wandb") is not None:
            try:
                from anomaly_kd.callbacks.wandb_extras import log_sweep_summary

                log_sweep_summary(config, tables)
            except Exception as error:  # the tables are written; W&B must not hide that
                log.warning("could not log the W&B sweep summary: %s", error)
        if tables.failed and self.exit_on_failure:
            message = failure_summary(tables)
            log.error("%s", message)
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(1)


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


__all__ = [
    "Job",
    "Row",
    "SweepReport",
    "SweepTables",
    "aggregate",
    "assign_variants",
    "build_tables",
    "collect_jobs",
    "find_job_dirs",
    "format_rows",
    "jobs_csv",
    "load_job",
    "markdown_table",
    "results_csv",
]
