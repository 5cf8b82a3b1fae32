"""A job that fails still leaves a ``results.json``, and never stops the other jobs of a sweep.

:func:`write_failed_results` writes ``{"status": "failed", "error": <one line>, ...}`` with the
same identifying keys as a successful run (model, data, category, seed, output_dir, config), so
that the sweep tables (:mod:`anomaly_kd.reporting.sweep_tables`) list the job as failed with its error.
A finished run's results (``status: ok``) are never replaced: a later failure in the same folder
(a re-test, a resumed job that is interrupted again) goes to ``results.failed.json`` beside them.
:func:`handle_job_failure` is what the entry point calls on any exception:

- in a multirun (``-m``) it records the failure and returns, so the launcher goes on with the
  next job; the sweep exits non-zero at the end
  (:class:`~anomaly_kd.reporting.sweep_report.SweepReport`);
- in a single run it records the failure and exits: status 2 for a :class:`UserError` (one line,
  no traceback), 1 for anything else (traceback, then the one line). The last line on stderr is
  always ``error: <message>``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from anomaly_kd.errors import UserError, user_error_in
from anomaly_kd.reporting.results import config_value, package_versions, write_json_atomic

log = logging.getLogger("anomaly_kd")

#: where a failure is written when the folder already holds a finished run's results.json
FAILED_BESIDE_OK = "results.failed.json"

#: longest error line kept in tables (results.json keeps the whole message and the traceback)
MAX_ERROR_CHARS = 500


def error_line(exc: BaseException) -> str:
    """One line that says what went wrong: the UserError's sentence, else ``Type: message``."""
    user = user_error_in(exc)
    if user is not None:
        return str(user)
    message = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def is_main_process() -> bool:
    """False in the extra processes of a multi-process job (DDP ranks > 0, SLURM tasks > 0)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(var)
        if value not in (None, "", "0"):
            return False
    return True


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``), whatever the launcher."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # no Hydra runtime (pipeline.run called from Python)
        return False


def job_output_dir(cfg: DictConfig | None) -> Path | None:
    """The job's output folder: ``paths.output_dir``, else Hydra's runtime output dir."""
    value = config_value(cfg, "paths.output_dir")
    if value is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            value = HydraConfig.get().runtime.output_dir
        except Exception:
            return None
    return Path(str(value)).resolve()


def _container(cfg: DictConfig | None) -> Any:
    if cfg is None:
        return None
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a broken interpolation may be why the job failed: keep it unresolved
        return OmegaConf.to_container(cfg, resolve=False)


def _task_overrides() -> list[str] | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:
        return None


def failed_results(cfg: DictConfig | None, exc: BaseException, output_dir: Path | None = None) -> dict:
    """The ``results.json`` payload of a failed job."""
    category, seed = config_value(cfg, "category"), config_value(cfg, "seed")
    try:
        seed = int(seed) if seed is not None else None
    except (TypeError, ValueError):
        pass
    return {
        "status": "failed",
        "error": error_line(exc),
        "error_type": type(user_error_in(exc) or exc).__name__,
        "model": config_value(cfg, "model.name"),
        "data": config_value(cfg, "data.name"),
        "category": None if category is None else str(category),
        "seed": seed,
        "output_dir": str(output_dir) if output_dir else None,
        "overrides": _task_overrides(),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "versions": package_versions(),
        "config": _container(cfg),
    }


def write_failed_results(output_dir: str | os.PathLike | None, cfg: DictConfig | None,
                         exc: BaseException, **extra: Any) -> Path | None:
    """Write ``<output_dir>/results.json`` with ``status: failed`` (atomically; main process only).

    ``extra`` keys are added to the payload (e.g. ``epochs_trained``). Returns the path written, or
    None when there is no folder to write to or this is not the main process.
    """
    output_dir = Path(output_dir).resolve() if output_dir is not None else job_output_dir(cfg)
    if output_dir is None or not is_main_process():
        return None
    payload = failed_results(cfg, exc, output_dir)
    payload.update(extra)
    target = output_dir / "results.json"
    if _finished(target):
        # e.g. a re-test (`train=false ckpt_path=...`) in the folder of a finished job failed:
        # the finished results stay, the failure is recorded beside them
        target = output_dir / FAILED_BESIDE_OK
        log.warning("%s holds a finished run's results; this failure is recorded in %s instead",
                    output_dir / "results.json", target)
    return write_json_atomic(target, payload)


def _finished(path: Path) -> bool:
    """True when ``path`` is the results.json of a run that finished (``status: ok``)."""
    try:
        return path.is_file() and json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def finish_experiment_loggers(exit_code: int = 0) -> None:
    """Close the W&B run of this job, if any, so that the next job of a sweep starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    try:
        wandb.finish(exit_code=exit_code)
    except Exception as error:  # never let logging hide the job's own outcome
        log.warning("could not finish the W&B run: %s", error)


def handle_job_failure(cfg: DictConfig | None, exc: BaseException) -> None:
    """Record a failed job; return in a multirun, exit (2 user error, 1 otherwise) in a single run."""
    line = error_line(exc)
    user = user_error_in(exc)
    try:
        path = write_failed_results(None, cfg, exc)
    except Exception as error:
        path = None
        log.warning("could not write the failed results.json: %s", error)
    finish_experiment_loggers(exit_code=1)
    where = f" (recorded in {path})" if path else ""
    if in_multirun():
        # a crash needs its traceback to be fixed; a user error is one clear line
        log.error("job failed: %s%s", line, where, exc_info=exc if user is None else None)
        return None
    log.error("%s%s", line, where)
    if user is None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stdout.flush()
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.exit(UserError.exit_code if user is not None else 1)


__all__ = [
    "error_line",
    "failed_results",
    "finish_experiment_loggers",
    "handle_job_failure",
    "in_multirun",
    "is_main_process",
    "job_output_dir",
    "write_failed_results",
]
