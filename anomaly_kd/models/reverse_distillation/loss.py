"""RD4AD loss, as ``loss_fucntion`` in hq-deng/RD4AD main.py: per level, ``1 - cos`` between the
teacher's and the decoder's maps of each sample flattened to one vector (``view(B, -1)``: one
cosine per sample over all channels and positions, ``CosineSimilarity()`` eps 1e-8), averaged over
the batch, summed over levels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def reverse_distillation_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    loss = teacher[0].new_zeros(())
    for t, s in zip(teacher, student, strict=True):
        loss = loss + (1 - F.cosine_similarity(t.flatten(1), s.flatten(1), dim=1)).mean()
    return loss
