"""ddp_spawn / ddp_fork: fit and test run in worker processes that give back only the weights, the
best checkpoint path and the logged metrics. Rank 0 of the test leaves the results in a file
(the hand-off) that this process reads back; the number of epochs trained comes from last.ckpt."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from anomaly_kd.trainer_setup import keep_earlier_csv_logs


def spawns_workers(trainer: pl.Trainer) -> bool:
    """ddp_spawn / ddp_fork: fit and test run in worker processes that give back only the weights,
    the best checkpoint path and the logged metrics, not the module's attributes."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def prepare_handoff(trainer: pl.Trainer, model: pl.LightningModule, output_dir: Path) -> Path | None:
    """Under ddp_spawn, the file where rank 0 leaves test_results/test_scores for this process."""
    if not spawns_workers(trainer):
        model.results_handoff = None
        return None
    # The test workers start a fresh CSVLogger that would delete the fit workers' metrics.csv:
    # keep the training curves as metrics.<n>.csv.
    keep_earlier_csv_logs(trainer.loggers)
    path = output_dir / ".test_results_handoff.json"
    path.unlink(missing_ok=True)  # never read a stale one
    model.results_handoff = str(path)
    return path


def take_handoff(model: pl.LightningModule, path: Path | None) -> None:
    if path is None:
        return
    if not path.is_file():
        raise RuntimeError(f"the test workers did not leave their results in {path}")
    payload = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    model.test_results, model.test_scores = payload["test_results"], payload["test_scores"]
    model.results_handoff = None


def epochs_trained(trainer: pl.Trainer, output_dir: Path, trained: bool) -> int:
    """trainer.current_epoch; after a ddp_spawn fit (whose loop state stays in the workers) the
    number of epochs that last.ckpt (saved at every training epoch's end) has completed."""
    if not (trained and spawns_workers(trainer)):
        return int(trainer.current_epoch)
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return int(trainer.current_epoch)
    return int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1
