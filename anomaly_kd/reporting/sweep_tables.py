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

The Hydra callback :class:`~anomaly_kd.reporting.sweep_report.SweepReport` (registered in
``conf/hydra/default.yaml``) builds the tables in ``on_multirun_end`` and makes the sweep exit with status 1 if any job failed;
``python -m anomaly_kd.report <sweep_dir>`` rebuilds them at any time (also for a sweep whose
master process was killed: jobs without ``results.json`` are listed as failed).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from anomaly_kd.reporting.paper_values import SOURCES, column_name, source_note
from anomaly_kd.reporting.sweep_jobs import Job, collect_jobs, relative_path
from anomaly_kd.reporting.sweep_rows import (
    LABELS,
    METRICS,
    Row,
    aggregate,
    finite_number,
    sort_key,
    table_paper_columns,
)


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


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _cell(row: Row, metric: str) -> str:
    mean = row.mean.get(metric)
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {_fmt(row.std.get(metric))}"


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
        for job in sorted(failed, key=lambda j: (sort_key(j.model), sort_key(j.category), sort_key(j.seed))):
            error = (job.error or "").replace("|", "\\|")
            lines.append(f"| {job.model} | {job.data} | {job.category} | {job.seed} | {error} | "
                         f"{relative_path(job.path, tables.sweep_dir)} |")
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
            *[_csv_number(finite_number(job.metrics.get(m))) for m in METRICS],
            job.error or "", relative_path(job.path, tables.sweep_dir),
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


