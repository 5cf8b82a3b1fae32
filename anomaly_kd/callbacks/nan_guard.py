"""Stop training at the first non-finite loss, before it can reach the weights or a checkpoint.

Cheap checks, during fit only:

- ``on_before_backward``: the training loss of the step about to be back-propagated. A NaN or
  infinite loss stops training there, before ``backward`` and the optimizer step, so the weights
  in memory are still those of the previous step.
- ``on_validation_start`` and ``on_save_checkpoint``: the model's parameters. A finite loss can
  still be followed by an optimizer step that overflows the weights (a huge learning rate);
  refusing the save keeps the last good ``last.ckpt`` / ``best.ckpt`` on disk instead of
  overwriting them with NaNs.
- ``on_validation_epoch_end`` (before the model's own hook turns validation maps into thresholds):
  the anomaly scores and maps of the validation normals, which overflow when the weights are huge
  but still finite.

Either raises :class:`NonFiniteLossError` (a :class:`~anomaly_kd.errors.UserError`): the entry
point prints its one line, which names the epoch and step and the checkpoint that is kept, and
exits non-zero. Lightning's ``ModelCheckpoint`` does not save on exceptions, so nothing is
written after it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch

from anomaly_kd.errors import UserError


def _first_non_finite(named: list[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the tensors holding a NaN or inf. One fused norm first (milliseconds for a ResNet);
    only if that is not finite (NaN/inf, or finite values too large to square) the exact check."""
    tensors = [t.detach() for _, t in named if t.numel()]
    if not tensors:
        return []
    norms = torch._foreach_norm([t.float() if not t.is_floating_point() else t for t in tensors])
    if bool(torch.isfinite(torch.stack([n.float() for n in norms])).all()):
        return []
    return [name for name, t in named if t.numel() and not bool(torch.isfinite(t.detach()).all())]


class NonFiniteLossError(UserError):
    """Training produced a NaN or infinite loss (or weights)."""


class NonFiniteLossGuard(pl.Callback):
    def __init__(self) -> None:
        self._batch_idx = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch_idx = int(batch_idx)

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        value = float(loss.detach().float().flatten()[0]) if loss.numel() else float("nan")
        what = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        raise NonFiniteLossError(
            f"the training loss is {what} at epoch {trainer.current_epoch}, step {self._batch_idx} of "
            f"the epoch (global step {trainer.global_step}); training stopped before this step changed "
            f"the weights. {self._kept(trainer)} Lower the learning rate (model.lr) or check the "
            "training images."
        )

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._check_weights(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        for name in ("_val_scores", "_val_maps"):  # what AnomalyModule collected for calibration
            values = [v for v in getattr(pl_module, name, None) or [] if isinstance(v, torch.Tensor)]
            if _first_non_finite([(name, v) for v in values]):
                raise NonFiniteLossError(
                    f"the anomaly {name[5:]} of the validation images are NaN or infinite after epoch "
                    f"{trainer.current_epoch} (global step {trainer.global_step}): the weights "
                    f"diverged; they were not saved. {self._kept(trainer)} Lower the learning rate "
                    "(model.lr) or check the training images."
                )

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._check_weights(trainer, pl_module)

    def _check_weights(self, trainer, pl_module) -> None:
        # trainable weights only: frozen teachers cannot change
        bad = _first_non_finite([(n, p) for n, p in pl_module.named_parameters() if p.requires_grad])
        if not bad:
            return
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise NonFiniteLossError(
            f"the weights became non-finite (NaN/inf in {bad[0]}{more}) during epoch "
            f"{trainer.current_epoch} (global step {trainer.global_step}); they were not saved. "
            f"{self._kept(trainer)} Lower the learning rate (model.lr) or check the training images."
        )

    @staticmethod
    def _kept(trainer) -> str:
        callback = trainer.checkpoint_callback
        folder = Path(callback.dirpath) if callback is not None and callback.dirpath else None
        last = folder / "last.ckpt" if folder is not None else None
        if last is not None and last.is_file():
            return f"The last good checkpoint is kept: {last}."
        return "No epoch had finished, so there is no checkpoint to keep."


__all__ = ["NonFiniteLossError", "NonFiniteLossGuard"]
