"""Checks of a composed config before anything is built or trained: each bad value is a
:class:`UserError` of one line that says what to give instead."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from anomaly_kd.errors import UserError


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



def check_image_size(model: pl.LightningModule, image_size: int) -> None:
    multiple = int(getattr(model, "input_multiple", 1))
    if image_size % multiple:
        raise UserError(
            f"data.image_size={image_size} is not divisible by {multiple}, the stride of this "
            f"model's deepest features: use e.g. {max(multiple, round(image_size / multiple) * multiple)}."
        )
