"""``run(cfg) -> dict``: one job from a composed config, with no Hydra runtime needed.

config -> datamodule -> model -> fit (students learn on train; validation normals give statistics
and thresholds; the checkpoint rule of the method picks the weights) -> test (maps and scores ->
metrics on the whole test set) -> results.json, scores.csv, overlays.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from anomaly_kd.callbacks.nan_guard import NonFiniteLossGuard
from anomaly_kd.callbacks.output_folder import folder_write_problem
from anomaly_kd.callbacks.seeding import EpochSeeder
from anomaly_kd.callbacks.wandb_extras import log_run_config
from anomaly_kd.errors import UserError
from anomaly_kd.reporting.results import (
    device_name,
    package_versions,
    results_table,
    write_json_atomic,
    write_scores_csv,
)

log = logging.getLogger(__name__)

# Lightning warnings that are expected here and would only hide the useful ones.
for _pattern in (
    r".*module\(s\) in eval mode.*",  # frozen teachers stay in eval mode on purpose
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*does not have many workers.*",  # num_workers is a data option; 0 is the safe default
    r".*smaller than the logging interval.*",
):
    warnings.filterwarnings("ignore", message=_pattern)


class _DropLightningTip(logging.Filter):
    """Lightning logs "💡 Tip: ... try installing litlogger" at every run: an advertisement, not
    news about the run. Dropped; every other Lightning message stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


for _name in ("lightning_utilities.core.rank_zero", "lightning_fabric.utilities.rank_zero",
              "pytorch_lightning.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropLightningTip())


def _without(node: DictConfig, *keys: str) -> DictConfig:
    cfg = OmegaConf.to_container(node, resolve=True)
    for key in keys:
        cfg.pop(key, None)
    return OmegaConf.create(cfg)


def validate_config(cfg: DictConfig) -> None:
    """Reject nonsense values before anything is built or trained."""
    epochs = _whole_number(cfg, "trainer.max_epochs")
    if epochs is not None and epochs < 0 and epochs != -1:
        raise UserError(f"trainer.max_epochs={epochs} is negative: give a number of epochs >= 0.")
    limit = _real_number(cfg, "fpr_limit", 0.3)
    if not 0.0 < limit <= 1.0:
        raise UserError(f"fpr_limit={limit} is outside (0, 1]: the MVTec default is 0.3.")
    size = _whole_number(cfg, "data.image_size")
    if size is not None and size <= 0:
        raise UserError(f"data.image_size={size} must be a positive number of pixels.")
    seed = _whole_number(cfg, "seed")
    if seed is None or not 0 <= seed < 2**32:
        raise UserError(f"seed={cfg.get('seed')} must be a whole number from 0 to 4294967295.")
    for key in ("model.lr", "model.teacher_lr"):
        if OmegaConf.select(cfg, key, default=None) is not None and not _real_number(cfg, key, 1.0) > 0:
            raise UserError(f"{key}={OmegaConf.select(cfg, key)} must be a positive learning rate.")
    quantile = OmegaConf.select(cfg, "model.threshold_quantile", default=None)
    if quantile is not None and not 0.0 < _real_number(cfg, "model.threshold_quantile", 0.99) <= 1.0:
        raise UserError(f"model.threshold_quantile={quantile} is outside (0, 1]: 0.99 is the default.")
    resolution = cfg.get("eval_resolution", "model")
    if resolution not in ("model", "native"):
        raise UserError(f"eval_resolution={resolution!r} must be `model` (maps and masks at data.image_size) "
                        "or `native` (maps upsampled to each image's original size, as MVTec's evaluation).")
    if not isinstance(cfg.get("rd4ad_pro", False), bool):
        raise UserError(f"rd4ad_pro={cfg.get('rd4ad_pro')!r} must be true or false.")
    if not cfg.get("train", True) and not cfg.get("ckpt_path"):
        raise UserError("train=false needs a checkpoint to test: pass ckpt_path=/path/to/model.ckpt.")
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={accelerator} (trainer=gpu) needs a CUDA GPU and this machine has none "
                        "that torch can use: run with trainer=cpu, or without trainer= (the default picks what exists).")


def _whole_number(cfg: DictConfig, key: str) -> int | None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{key}={value!r} must be a whole number.")
    return value


def _real_number(cfg: DictConfig, key: str, default: float) -> float:
    value = OmegaConf.select(cfg, key, default=default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{key}={value!r} must be a number.")
    return float(value)


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    return instantiate(_without(cfg.data, "name"))


def build_model(cfg: DictConfig) -> pl.LightningModule:
    model_cfg = _without(cfg.model, "name", "compile")
    model_cfg.fpr_limit = float(cfg.get("fpr_limit", 0.3))
    try:
        model = instantiate(model_cfg, _convert_="all")
    except InstantiationException as error:
        # a bad model.* value or an unknown key (TypeError: unexpected keyword): one line, not a
        # traceback (results.json of the failed job keeps the traceback)
        cause = error.__cause__
        if isinstance(cause, (ValueError, TypeError)) and not isinstance(cause, UserError):
            raise UserError(f"model={cfg.model.get('name')}: {cause}; check the model.* settings.") from error
        raise
    if cfg.model.get("compile", False):
        model.compile_networks()  # torch.compile of each network, in place (checkpoint keys unchanged)
    return model


def check_image_size(model: pl.LightningModule, image_size: int) -> None:
    multiple = int(getattr(model, "input_multiple", 1))
    if image_size % multiple:
        raise UserError(
            f"data.image_size={image_size} is not divisible by {multiple}, the stride of this "
            f"model's deepest features: use e.g. {max(multiple, round(image_size / multiple) * multiple)}."
        )


def build_trainer(cfg: DictConfig, model: pl.LightningModule, output_dir: Path) -> pl.Trainer:
    monitor = getattr(model, "checkpoint_monitor", None)
    # last.ckpt after every training epoch, whatever the validation schedule: the resume point.
    # (monitor=None + save_top_k=1 keeps the latest epoch; Lightning's save_last alone only
    # writes when a top-k checkpoint was written in the same step.)
    last = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="last",
        monitor=None,
        save_top_k=1,
        save_last=False,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    checkpoints = [last]
    if monitor:  # best.ckpt by the method's rule; first, so it is trainer.checkpoint_callback
        best = ModelCheckpoint(
            dirpath=output_dir / "checkpoints",
            filename="best",
            monitor=monitor,
            mode=getattr(model, "checkpoint_mode", "min"),
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,
        )
        checkpoints = [best, last]
    # Always on: stop at a NaN/inf loss before it reaches the weights or a checkpoint; random
    # state from (seed, epoch) so that a resumed run continues exactly (see README, resume).
    callbacks = [*checkpoints, NonFiniteLossGuard(), EpochSeeder(int(cfg.seed))]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    keep_earlier_csv_logs(loggers)
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(output_dir),
        _convert_="all",
    )


def _test_checkpoint(cfg: DictConfig, trainer: pl.Trainer, trained: bool) -> str | None:
    if not trained:
        return _resolve_ckpt(cfg.get("ckpt_path"), trainer)
    selected = getattr(trainer.lightning_module, "selected_checkpoint", None)
    if selected:  # weights the method assembled itself (stfpm_ensemble's per-student rule)
        return selected
    callback = trainer.checkpoint_callback  # best.ckpt's when the method has a selection rule
    if callback is None or callback.monitor is None:
        return None  # the weights in memory, i.e. those of the last epoch
    return callback.best_model_path or None


def _resolve_ckpt(ckpt_path: str | None, trainer: pl.Trainer) -> str | None:
    if ckpt_path in (None, ""):
        return None
    if ckpt_path in ("last", "best"):
        path = Path(trainer.default_root_dir) / "checkpoints" / f"{ckpt_path}.ckpt"
    else:
        path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise UserError(f"Checkpoint {path} not found: check ckpt_path.")
    return str(path)


def keep_earlier_csv_logs(loggers: list) -> None:
    """Lightning's CSVLogger deletes an existing ``metrics.csv``: a resumed (or re-tested) run in
    the same folder would lose the earlier training curves. Rename them ``metrics.<n>.csv`` first."""
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        metrics = Path(logger.log_dir) / "metrics.csv"
        if metrics.is_file():
            n = 1
            while metrics.with_name(f"metrics.{n}.csv").exists():
                n += 1
            metrics.rename(metrics.with_name(f"metrics.{n}.csv"))
            log.info("Kept the earlier training curves of this folder as %s", metrics.with_name(f"metrics.{n}.csv"))


def _write_scores_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_scores_csv(tmp, rows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------ ddp_spawn
def _spawns_workers(trainer: pl.Trainer) -> bool:
    """ddp_spawn / ddp_fork: fit and test run in worker processes that give back only the weights,
    the best checkpoint path and the logged metrics, not the module's attributes."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def _results_handoff(trainer: pl.Trainer, model: pl.LightningModule, output_dir: Path) -> Path | None:
    """Under ddp_spawn, the file where rank 0 leaves test_results/test_scores for this process."""
    if not _spawns_workers(trainer):
        model.results_handoff = None
        return None
    # The test workers start a fresh CSVLogger that would delete the fit workers' metrics.csv:
    # keep the training curves as metrics.<n>.csv.
    keep_earlier_csv_logs(trainer.loggers)
    path = output_dir / ".test_results_handoff.json"
    path.unlink(missing_ok=True)  # never read a stale one
    model.results_handoff = str(path)
    return path


def _take_handoff(model: pl.LightningModule, path: Path | None) -> None:
    if path is None:
        return
    import json

    if not path.is_file():
        raise RuntimeError(f"the test workers did not leave their results in {path}")
    payload = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    model.test_results, model.test_scores = payload["test_results"], payload["test_scores"]
    model.results_handoff = None


def _epochs_trained(trainer: pl.Trainer, output_dir: Path, trained: bool) -> int:
    """trainer.current_epoch; after a ddp_spawn fit (whose loop state stays in the workers) the
    number of epochs that last.ckpt (saved at every training epoch's end) has completed."""
    if not (trained and _spawns_workers(trainer)):
        return int(trainer.current_epoch)
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return int(trainer.current_epoch)
    return int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1


# ------------------------------------------------------------------ command lines, interruptions
_RESUME_REPLACES = {"ckpt_path", "train", "hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir",
                    "hydra.sweeper.params"}


def job_overrides() -> list[str] | None:
    """The command-line overrides of this job (a multirun job's own values), None without Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return list(HydraConfig.get().overrides.task)
    except Exception:
        pass
    return None


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def _override_key(item: str) -> str:
    return item.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def _hydra_value(value: str) -> str:
    """A value as Hydra's override grammar reads it back (quoted unless plainly safe)."""
    plain = all(c.isalnum() or c in "_-./:" for c in value)
    return value if plain and value else "'" + value.replace("'", "\\'") + "'"


def job_command(settings: dict[str, Any] | None = None, drop: set[str] | frozenset = frozenset()) -> str:
    """``python -m anomaly_kd.run <this job's overrides>`` with the keys in ``drop`` removed and
    ``settings`` replacing or adding keys; given settings, a multirun job is rerun alone."""
    settings = settings or {}
    overrides = job_overrides()
    words = ["python", "-m", "anomaly_kd.run"]
    if overrides is None:
        words.append("<your overrides>")
        overrides = []
    drop = set(settings) | set(drop)
    words += [o for o in overrides if _override_key(o) not in drop]
    if settings and _in_multirun():
        words.append("hydra.sweeper.params=null")  # the job alone, not its sweep again
    words += [f"{key}={_hydra_value(str(value))}" for key, value in settings.items()]
    return " ".join(w if w == "<your overrides>" else shlex.quote(w) for w in words)


class JobInterrupted(Exception):
    """SIGTERM stopped the job; the message says how to resume or complete it (exit 128 + 15)."""

    exit_code = 128 + signal.SIGTERM

    def __init__(self, message: str, command: str):
        super().__init__(" ".join(message.split()))
        self.command = command


class _Terminated(BaseException):
    """Raised by our SIGTERM handler outside Lightning's loops (which stop at the next batch)."""


class _Job:
    """Where a job stands, for the message and command printed when SIGTERM stops it."""

    def __init__(self) -> None:
        self.stage = "setting up"
        self.output_dir: Path | None = None
        self.trained = False
        self.tested_checkpoint: str | None = None
        self.test_only = False
        self._stale_last: tuple[int, int] | None = None  # a last.ckpt this run did not write

    def note_existing_checkpoint(self, resuming: bool) -> None:
        """Remember a last.ckpt left in the folder by an earlier run (unless this run resumes it)."""
        if self.output_dir is not None and not resuming:
            self._stale_last = _file_version(self.output_dir / "checkpoints" / "last.ckpt")

    def _resumable(self, last: Path) -> bool:
        version = _file_version(last)
        return version is not None and version != self._stale_last

    def _on_sigterm(self, signum, frame) -> None:
        # Inside fit/test, Lightning's handler is installed and calls this one after setting its
        # flag: its loops stop at the next batch. Anywhere else (including Lightning's own setup
        # and teardown, before/after its handler is in place) this is the handler: stop now.
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            raise _Terminated()

    @contextmanager
    def sigterm_handler(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def interrupted(self) -> JobInterrupted:
        folder = self.output_dir
        here = {"hydra.run.dir": folder}
        if folder is None:
            command = job_command()
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; nothing was written. "
                                  f"Run it again with: {command}", command)
        if self.test_only:
            command = job_command(here)
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; results.json was not "
                                  f"written. Run the test again with: {command}", command)
        last = folder / "checkpoints" / "last.ckpt"
        if self.stage in ("setting up", "training"):
            if self._resumable(last):
                command = job_command({"ckpt_path": last, **here}, drop=_RESUME_REPLACES)
                return JobInterrupted(
                    f"interrupted by SIGTERM while {self.stage}; the checkpoint of the last finished "
                    f"epoch is kept ({last}). Resume with: {command}", command)
            command = job_command(here, drop=_RESUME_REPLACES)
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}, before any epoch had "
                                  f"finished. Start again with: {command}", command)
        ckpt = self.tested_checkpoint or (str(last) if self._resumable(last) else None)
        if ckpt is None:
            command = job_command(here, drop=_RESUME_REPLACES)
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; results.json was not "
                                  f"written. Run the job again with: {command}", command)
        command = job_command({"train": "false", "ckpt_path": ckpt, **here}, drop=_RESUME_REPLACES)
        return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; training had finished but "
                              f"results.json was not written. Complete the job (test stage only) "
                              f"with: {command}", command)


def _file_version(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _disk_problem(error: BaseException, output_dir: Path | None) -> str | None:
    """The one-line message for a write that failed in the output folder (full, read-only, denied)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno is not None:
            name = str(error.filename or "")
            inside = output_dir is not None and name.startswith(str(output_dir))
            if error.errno in _DISK_FULL or (inside and error.errno in (errno.EACCES, errno.EPERM)):
                return (f"could not write {name or output_dir}: {error.strerror}; free disk space or "
                        "choose another output folder with hydra.run.dir=<folder>.")
        error = error.__cause__ or error.__context__
    return None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and/or test one model on one category; returns (and writes) the results dict.

    SIGTERM stops it with :class:`JobInterrupted`, whose message holds the command that resumes
    (or completes) the job; a write that fails for lack of space or permission in the output
    folder is a :class:`UserError`.
    """
    job = _Job()
    with job.sigterm_handler():
        try:
            return _run(cfg, job)
        except (SIGTERMException, _Terminated):
            raise job.interrupted() from None
        except Exception as error:
            problem = _disk_problem(error, job.output_dir)
            if problem is None:
                raise
            raise UserError(problem) from error


def _run(cfg: DictConfig, job: _Job) -> dict[str, Any]:
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir).resolve()
    problem = folder_write_problem(output_dir, create=True)
    if problem:
        raise UserError(problem)
    job.output_dir = output_dir
    job.test_only = not cfg.get("train", True)
    job.note_existing_checkpoint(resuming=bool(cfg.get("ckpt_path")))
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
    log_run_config(trainer, cfg)  # W&B: the resolved config of this job (no-op for other loggers)

    timing: dict[str, float] = {}
    trained = bool(cfg.get("train", True))
    if trained:
        start = time.perf_counter()
        resume_from = _resolve_ckpt(cfg.get("ckpt_path"), trainer)
        job.stage = "training"
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        if trainer.received_sigterm:  # came after the last batch: Lightning finished the fit
            raise _Terminated()
        job.trained = True
        timing["train_seconds"] = time.perf_counter() - start
        n_train = len(datamodule.train_dataloader().dataset) * max(trainer.current_epoch, 1)
        timing["train_images_per_second"] = n_train / max(timing["train_seconds"], 1e-9)

    results: dict[str, Any] = {
        "status": "ok",
        "model": cfg.model.get("name"),
        "data": cfg.data.get("name"),
        "category": str(cfg.category),
        "seed": int(cfg.seed),
        "output_dir": str(output_dir),
        "epochs_trained": _epochs_trained(trainer, output_dir, trained),
        "eval_resolution": model.eval_resolution,
    }
    if cfg.get("test", True):
        ckpt = _test_checkpoint(cfg, trainer, trained)
        job.tested_checkpoint = ckpt
        log.info("Testing %s", ckpt or "the weights after the last training epoch")
        start = time.perf_counter()
        job.stage = "testing"
        handoff = _results_handoff(trainer, model, output_dir)
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        _take_handoff(model, handoff)
        job.stage = "writing the results"
        timing["test_seconds"] = time.perf_counter() - start
        n_test = len(model.test_scores)
        timing["test_images_per_second"] = n_test / max(timing["test_seconds"], 1e-9)
        results["tested_checkpoint"] = ckpt or "weights after the last training epoch"
        results["metrics"] = model.test_results
        timing["metric_seconds"] = model.test_results.get("metric_seconds")
        if trainer.is_global_zero:
            _write_scores_atomic(output_dir / "scores.csv", model.test_scores)
    if hasattr(model, "model_summary"):
        results["model_summary"] = model.model_summary()
    results["timing"] = timing
    results["versions"] = package_versions()
    # What reproduces this result: the command (overrides), the seed, the checkpoint resumed from,
    # and what decides float results on CPU (thread count) or GPU (deterministic algorithms).
    results["command"] = job_command()
    results["overrides"] = job_overrides()
    results["resumed_from"] = resume_from if trained else None
    results["device"] = device_name(trainer.strategy.root_device)
    results["precision"] = str(trainer.precision)
    results["reproducibility"] = {
        "seed": int(cfg.seed),
        "deterministic": cfg.trainer.get("deterministic"),
        "accelerator": cfg.trainer.get("accelerator"),
        "precision": cfg.trainer.get("precision"),
        "torch_threads": torch.get_num_threads(),
    }
    results["config"] = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "results.json", results)
        if "metrics" in results:
            print("\n" + results_table(results))
        print(f"\nResults, checkpoints and images: {output_dir}")
    return results
