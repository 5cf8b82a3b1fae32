"""``run(cfg) -> dict``: one job from a composed config, with no Hydra runtime needed.

config -> datamodule -> model -> fit (students learn on train; validation normals give statistics
and thresholds; the checkpoint rule of the method picks the weights) -> test (maps and scores ->
metrics on the whole test set) -> results.json, scores.csv, overlays.

What each step needs lives beside it: :mod:`anomaly_kd.config_checks` (bad values),
:mod:`anomaly_kd.trainer_setup` (datamodule, model, trainer, checkpoints),
:mod:`anomaly_kd.ddp_results` (results back from ddp_spawn workers), :mod:`anomaly_kd.job`
(SIGTERM, resume commands, disk errors).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from anomaly_kd.console import config_summary  # importing it drops Lightning's every-run adverts
from anomaly_kd.callbacks.output_folder import folder_write_problem
from anomaly_kd.callbacks.wandb_extras import log_run_config
from anomaly_kd.config_checks import check_image_size, validate_config
from anomaly_kd.ddp_results import epochs_trained, prepare_handoff, take_handoff
from anomaly_kd.errors import UserError
from anomaly_kd.job import JobState, Terminated, disk_problem, job_command, job_overrides
from anomaly_kd.reporting.results import (
    results_table,
    run_header,
    run_provenance,
    write_json_atomic,
    write_scores_csv_atomic,
)
from anomaly_kd.trainer_setup import apply_channels_last, build_datamodule, build_model, build_trainer
from anomaly_kd.trainer_setup import checkpoint_to_test, resolve_checkpoint, tested_epoch

log = logging.getLogger(__name__)

__all__ = ["build_datamodule", "build_model", "build_trainer", "run"]


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and/or test one model on one category; returns (and writes) the results dict.

    SIGTERM stops it with :class:`~anomaly_kd.job.JobInterrupted`, whose message holds the command that resumes
    (or completes) the job; a write that fails for lack of space or permission in the output
    folder is a :class:`UserError`.
    """
    job = JobState()
    with job.sigterm_handler():
        try:
            return _run(cfg, job)
        except (SIGTERMException, Terminated):
            raise job.interrupted() from None
        except Exception as error:
            problem = disk_problem(error, job.output_dir)
            if problem is None:
                raise
            raise UserError(problem) from error


def _run(cfg: DictConfig, job: JobState) -> dict[str, Any]:
    validate_config(cfg)
    output_dir = _output_folder(cfg, job)
    log.info("%s", config_summary(cfg))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)

    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")  # index and check the data first: its errors before any model is built
    model = build_model(cfg)
    model.has_masks = bool(getattr(datamodule, "has_masks", True))
    model.eval_resolution = str(cfg.get("eval_resolution", "model"))
    model.rd4ad_pro = bool(cfg.get("rd4ad_pro", False))
    model.image_size = int(cfg.data.image_size)  # stored in checkpoints for export/predict
    check_image_size(model, int(cfg.data.image_size))
    trainer = build_trainer(cfg, model, output_dir)
    apply_channels_last(cfg, model, trainer)
    log_run_config(trainer, cfg)  # W&B: the resolved config of this job (no-op for other loggers)

    timing: dict[str, float] = {}
    trained = bool(cfg.get("train", True))
    resume_from = _fit(cfg, job, trainer, model, datamodule, timing) if trained else None
    results = run_header(cfg, output_dir, model.eval_resolution, epochs_trained(trainer, output_dir, trained))
    if cfg.get("test", True):
        _test(cfg, job, trainer, model, datamodule, trained, timing, results)
    summary = model.model_summary() if hasattr(model, "model_summary") else None
    results.update(run_provenance(cfg, trainer, summary, timing, resume_from, job_command(), job_overrides()))
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "results.json", results)
        if "metrics" in results:
            print("\n" + results_table(results))
        print(f"\nResults, checkpoints and images: {output_dir}")
    return results


def _output_folder(cfg: DictConfig, job: JobState) -> Path:
    output_dir = Path(cfg.paths.output_dir).resolve()
    problem = folder_write_problem(output_dir, create=True)
    if problem:
        raise UserError(problem)
    job.output_dir = output_dir
    job.test_only = not cfg.get("train", True)
    job.note_existing_checkpoint(resuming=bool(cfg.get("ckpt_path")))
    return output_dir


def _fit(cfg, job: JobState, trainer, model, datamodule, timing: dict) -> str | None:
    """Train (or resume); returns the checkpoint resumed from."""
    start = time.perf_counter()
    resume_from = resolve_checkpoint(cfg.get("ckpt_path"), trainer)
    job.stage = "training"
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    if trainer.received_sigterm:  # came after the last batch: Lightning finished the fit
        raise Terminated()
    job.trained = True
    timing["train_seconds"] = time.perf_counter() - start
    n_train = len(datamodule.train_dataloader().dataset) * max(trainer.current_epoch, 1)
    timing["train_images_per_second"] = n_train / max(timing["train_seconds"], 1e-9)
    return resume_from


def _test(cfg, job: JobState, trainer, model, datamodule, trained: bool, timing: dict, results: dict) -> None:
    """Test the checkpoint the method's rule picked: metrics into ``results``, scores.csv written."""
    ckpt = checkpoint_to_test(cfg, trainer, trained)
    job.tested_checkpoint = ckpt
    log.info("Testing %s", ckpt or "the weights after the last training epoch")
    start = time.perf_counter()
    job.stage = "testing"
    handoff = prepare_handoff(trainer, model, Path(results["output_dir"]))
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    take_handoff(model, handoff)
    job.stage = "writing the results"
    timing["test_seconds"] = time.perf_counter() - start
    n_test = len(model.test_scores)
    timing["test_images_per_second"] = n_test / max(timing["test_seconds"], 1e-9)
    results["tested_checkpoint"] = ckpt or "weights after the last training epoch"
    results["tested_epoch"] = tested_epoch(model, ckpt, trained, results["epochs_trained"])
    results["metrics"] = model.test_results
    timing["metric_seconds"] = model.test_results.get("metric_seconds")
    if trainer.is_global_zero:
        write_scores_csv_atomic(Path(results["output_dir"]) / "scores.csv", model.test_scores)
