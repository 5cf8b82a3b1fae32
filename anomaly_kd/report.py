"""Rebuild the tables of a sweep from its jobs' ``results.json``.

    python -m anomaly_kd.report multirun/2025-01-31_10-00-00            # writes results.md/.csv, jobs.csv
    python -m anomaly_kd.report multirun/2025-01-31_10-00-00 --strict   # exit 1 if a job failed

Works on any folder that holds job folders (a sweep, several sweeps copied together, a single
run's folder); jobs whose ``results.json`` is missing (killed, timed out, still running) are
listed as failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anomaly_kd.reporting.sweep_jobs import find_job_dirs
from anomaly_kd.reporting.sweep_tables import build_tables, failure_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anomaly_kd.report",
        description="Rebuild results.md, results.csv and jobs.csv of a sweep from its jobs' results.json.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder (hydra.sweep.dir), e.g. multirun/<time>")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any job failed")
    parser.add_argument("--quiet", action="store_true", help="do not print the table")
    args = parser.parse_args(argv)

    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder: give the sweep folder (hydra.sweep.dir).", file=sys.stderr)
        return 2
    if not find_job_dirs(args.sweep_dir):
        print(f"error: no job folders (results.json or .hydra/config.yaml) under {args.sweep_dir}.", file=sys.stderr)
        return 2
    tables = build_tables(args.sweep_dir)
    if not args.quiet:
        print(tables.markdown)
    for path in tables.paths.values():
        print(f"wrote {path}")
    if tables.failed:
        print(f"warning: {failure_summary(tables)}", file=sys.stderr)
        if args.strict:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
