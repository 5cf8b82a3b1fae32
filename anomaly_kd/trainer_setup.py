"""What a job builds from its config: the datamodule, the model, the trainer (checkpoints, always-on
callbacks, loggers), and which checkpoint its test uses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from anomaly_kd.callbacks.nan_guard import NonFiniteLossGuard
from anomaly_kd.callbacks.seeding import EpochSeeder
from anomaly_kd.errors import UserError
from anomaly_kd.models.components.layout import channels_last_on

log = logging.getLogger(__name__)


def _without(node: DictConfig, *keys: str) -> DictConfig:
    cfg = OmegaConf.to_container(node, resolve=True)
    for key in keys:
        cfg.pop(key, None)
    return OmegaConf.create(cfg)


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    return instantiate(_without(cfg.data, "name"))


def build_model(cfg: DictConfig) -> pl.LightningModule:
    model_cfg = _without(cfg.model, "name", "compile", "channels_last")
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


def apply_channels_last(cfg: DictConfig, model: pl.LightningModule, trainer: pl.Trainer) -> bool:
    """``model.channels_last`` (true / false, or auto, the default: on for the CPU, see
    :mod:`anomaly_kd.models.components.layout`) on the trainer's device, applied to ``model``.
    Returns whether it is on."""
    on = channels_last_on(cfg.model.get("channels_last", "auto"), trainer.strategy.root_device.type)
    if on:
        model.use_channels_last()
    return on


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


def checkpoint_to_test(cfg: DictConfig, trainer: pl.Trainer, trained: bool) -> str | None:
    if not trained:
        return resolve_checkpoint(cfg.get("ckpt_path"), trainer)
    selected = getattr(trainer.lightning_module, "selected_checkpoint", None)
    if selected:  # weights the method assembled itself (stfpm_ensemble's per-student rule)
        return selected
    callback = trainer.checkpoint_callback  # best.ckpt's when the method has a selection rule
    if callback is None or callback.monitor is None:
        return None  # the weights in memory, i.e. those of the last epoch
    return callback.best_model_path or None


def tested_epoch(model: pl.LightningModule, ckpt: str | None, trained: bool, epochs_trained: int) -> int | list[int] | None:
    """The training epoch whose weights were tested, counted from 0 as ``logs/metrics.csv`` counts
    them: the tested checkpoint's (read by the model as the test loaded it; one per student under
    stfpm_ensemble's per-student rule), else the last epoch trained (None when nothing was)."""
    if ckpt is None:
        return epochs_trained - 1 if trained and epochs_trained > 0 else None
    return model.loaded_epochs()


def resolve_checkpoint(ckpt_path: str | None, trainer: pl.Trainer) -> str | None:
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
