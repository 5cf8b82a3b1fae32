"""Random state that depends only on (seed, epoch), so that a resumed run continues exactly.

Lightning's checkpoints hold the weights, the optimizer and the loop counters, but not the state
of Python's, NumPy's and torch's random generators. Instead of saving and restoring them, every
training epoch starts from generators seeded by ``(seed, epoch)``: what an epoch draws (dropout,
random crops, the train loader's order, see
:class:`~anomaly_kd.data.base.EpochShuffleSampler`) is then the same whether the run went
through without a stop or was resumed from the checkpoint of the previous epoch, whatever was
drawn before (teacher pretraining, validation, a different number of restarts).
"""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch

from anomaly_kd.data.base import epoch_seed

#: ``stream`` argument of :func:`epoch_seed` for the global generators (0 is the train loader's)
GLOBAL_STREAM = 1


def seed_global_generators(seed: int, epoch: int) -> int:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA) for one epoch."""
    value = epoch_seed(seed, epoch, GLOBAL_STREAM)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)  # also seeds every CUDA device
    return value


class EpochSeeder(pl.Callback):
    """Reseed the global generators from ``(seed, epoch)`` at the start of every training epoch."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed_global_generators(self.seed, trainer.current_epoch)


__all__ = ["EpochSeeder", "seed_global_generators"]
