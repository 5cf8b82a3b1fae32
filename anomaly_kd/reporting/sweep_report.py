"""The Hydra callback of a multirun (``hydra.callbacks.sweep_report`` in ``conf/hydra/default.yaml``):
refuse impossible launches before any job starts; after the sweep, write the tables, log the W&B
summary run (with ``logger=wandb``), and exit 1 if any job failed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from anomaly_kd.reporting.results import config_value
from anomaly_kd.reporting.sweep_tables import build_tables, failure_summary

try:  # Hydra is a dependency, but keep the tables usable without its runtime
    from hydra.experimental.callback import Callback
except Exception:  # pragma: no cover
    Callback = object  # type: ignore[assignment,misc]

log = logging.getLogger("anomaly_kd")


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
                from anomaly_kd.reporting.wandb_sweep import log_sweep_summary

                log_sweep_summary(config, tables)
            except Exception as error:  # the tables are written; W&B must not hide that
                log.warning("could not log the W&B sweep summary: %s", error)
        if tables.failed and self.exit_on_failure:
            message = failure_summary(tables)
            log.error("%s", message)
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(1)

