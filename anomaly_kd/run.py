"""Entry point: ``python -m anomaly_kd.run model=stfpm data=mvtec category=hazelnut``.

Thin on purpose: Hydra composes the config, :func:`anomaly_kd.pipeline.run` does the work, and
errors a user can cause end as one line (``error: ...``) with exit status 2. SIGTERM ends as one
line too, with the command that resumes the job, and exit status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from anomaly_kd.job import JobInterrupted
from anomaly_kd.pipeline import run
from anomaly_kd.reporting.failures import (
    finish_experiment_loggers,
    handle_job_failure,
    write_failed_results,
)
from anomaly_kd.reporting.launch import check_launch

log = logging.getLogger("anomaly_kd")


def _record_interruption(cfg: DictConfig, exc: JobInterrupted) -> None:
    try:  # a finished run's results.json is kept; the interruption then goes beside it
        write_failed_results(None, cfg, exc, interrupted=True, resume_command=exc.command)
    except Exception as error:  # e.g. the disk that made us stop: the message still goes out
        log.warning("could not write the failed results.json: %s", error)


def run_job(cfg: DictConfig) -> float | None:
    """One job as the command line runs it: the launch checks, :func:`run`, and the way each
    failure ends (one line, exit status, ``results.failed.json``). Returns the image AUROC, the
    value a Hydra sweeper would optimise."""
    try:
        check_launch(cfg)  # e.g. refuses strategy=ddp inside a multirun
        results = run(cfg)
    except JobInterrupted as exc:
        # SIGTERM: stop (the whole sweep too), say how to resume; exit 143 = 128 + SIGTERM
        _record_interruption(cfg, exc)
        sys.stdout.flush()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        # writes results.json with status "failed"; in a multirun returns so the sweep goes on
        # (it exits 1 at the end), in a single run exits 2 (UserError) or 1 with `error: ...` last
        return handle_job_failure(cfg, exc)
    finally:
        finish_experiment_loggers()  # one W&B run per job of a sweep
    value = results.get("metrics", {}).get("image_auroc")
    return float(value) if value is not None else None


@hydra.main(version_base="1.3", config_path="pkg://anomaly_kd.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    main()
