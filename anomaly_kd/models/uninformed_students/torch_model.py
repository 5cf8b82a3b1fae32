"""Uninformed Students as a plain ``nn.Module``: per receptive field a pretrained teacher and an
ensemble of M students of the same architecture, plus the statistics the scores need.

Buffers (saved in checkpoints): ``descriptor_mean`` / ``descriptor_std`` ``[S, d]``, the teacher's
per-dimension statistics over the training images (students regress (T - mean) / std), and
``score_stats`` ``[S, 4]`` = (e_mean, e_std, v_mean, v_std) over the validation normals. NaN until
computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from anomaly_kd.models.uninformed_students.anomaly_map import (
    combine_scales,
    predictive_variance,
    regression_error,
)
from anomaly_kd.models.uninformed_students.patch_net import PatchNet


def student_seed(seed: int, patch_size: int, index: int) -> int:
    """Distinct initialisation seed of student ``index`` of scale ``patch_size``."""
    return 10_000 * seed + 10 * patch_size + index + 1


def build_student(patch_size: int, descriptor_dim: int, seed: int) -> PatchNet:
    """A randomly initialised patch network (PyTorch's default init) drawn from its own seed,
    leaving the global random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PatchNet(patch_size, descriptor_dim)


def crop_tiles(size: int, crop: int) -> list[int]:
    """Start offsets of the training crops along one image side: the side cut into tiles of
    ``crop`` (the last one flush with the far edge where ``crop`` does not divide ``size``).

    A crop drawn as one of these tiles covers every output position equally often (exactly so
    when ``crop`` divides ``size``; else the overlap of the last two tiles twice as often). A crop
    whose start is drawn uniformly from ``0 .. size - crop`` would not: a position ``x`` lies in
    ``min(x, size - crop) - max(0, x - crop + 1) + 1`` of the starts, so a corner of a 256 px image
    is trained 4,096 times less often than its centre with crop 64, and the outer 32 px (44% of
    the image, where e.g. the tire set has no defect) less than half as often."""
    if not 1 <= crop <= size:
        raise ValueError(f"crop {crop} must lie in 1..{size}")
    starts = list(range(0, size - crop + 1, crop))
    if starts[-1] != size - crop:
        starts.append(size - crop)
    return starts


class UninformedStudentsModel(nn.Module):
    def __init__(
        self,
        patch_sizes: Sequence[int] = (17, 33, 65),
        n_students: int = 3,
        descriptor_dim: int = 128,
        seed: int = 0,
    ):
        super().__init__()
        self.patch_sizes = [int(p) for p in patch_sizes]
        self.n_students = int(n_students)
        self.descriptor_dim = int(descriptor_dim)
        n = len(self.patch_sizes)
        self.teachers = nn.ModuleList(PatchNet(p, descriptor_dim) for p in self.patch_sizes)
        self.teachers.requires_grad_(False)
        self.students = nn.ModuleList(
            nn.ModuleList(
                build_student(p, descriptor_dim, student_seed(seed, p, i)) for i in range(n_students)
            )
            for p in self.patch_sizes
        )
        nan = float("nan")
        self.register_buffer("descriptor_mean", torch.full((n, descriptor_dim), nan))
        self.register_buffer("descriptor_std", torch.full((n, descriptor_dim), nan))
        self.register_buffer("score_stats", torch.full((n, 4), nan))

    # ---------------------------------------------------------------- teacher targets
    def normalize_descriptors(self, scale: int, descriptors: torch.Tensor) -> torch.Tensor:
        mean = self.descriptor_mean[scale].view(1, -1, 1, 1)
        std = self.descriptor_std[scale].view(1, -1, 1, 1)
        return (descriptors - mean) / std

    @torch.no_grad()
    def teacher_dense(self, scale: int, images: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) dense teacher descriptors ``[B, d, H, W]``."""
        return self.teachers[scale].dense(images)

    def has_descriptor_stats(self) -> bool:
        return bool(torch.isfinite(self.descriptor_mean).all() and torch.isfinite(self.descriptor_std).all())

    def has_score_stats(self) -> bool:
        return bool(torch.isfinite(self.score_stats).all())

    # ---------------------------------------------------------------- training pairs
    def crop_windows(self, scale: int, images: torch.Tensor, crop: int | None) -> torch.Tensor:
        """Zero-padded, normalised input windows whose valid dense output is a ``crop`` x ``crop``
        region of the full-image output (the whole image when ``crop`` is None or too large);
        per image one tile of ``crop_tiles``, drawn uniformly (global torch RNG)."""
        net = self.teachers[scale]
        padded = net.pad(net.normalize(images))
        height, width = images.shape[-2:]
        if crop is None or (crop >= height and crop >= width):
            return padded
        ch, cw = min(crop, height), min(crop, width)
        ys, xs = crop_tiles(height, ch), crop_tiles(width, cw)
        rf = net.receptive_field
        windows = []
        for b in range(images.shape[0]):
            tile = int(torch.randint(0, len(ys) * len(xs), ()))
            y, x = ys[tile // len(xs)], xs[tile % len(xs)]
            windows.append(padded[b, :, y : y + ch + rf - 1, x : x + cw + rf - 1])
        return torch.stack(windows)

    def training_pair(
        self, scale: int, images: torch.Tensor, crop: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(normalised teacher target, [each student's output]) on the same (cropped) region."""
        windows = self.crop_windows(scale, images, crop)
        with torch.no_grad():
            target = self.normalize_descriptors(scale, self.teachers[scale].dense_valid(windows))
        outputs = [student.dense_valid(windows) for student in self.students[scale]]
        return target, outputs

    # ---------------------------------------------------------------- scores
    @torch.no_grad()
    def raw_scores(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per scale, the regression error and predictive variance maps ``[B, H, W]``."""
        errors, variances = [], []
        for scale in range(len(self.patch_sizes)):
            target = self.normalize_descriptors(scale, self.teacher_dense(scale, images))
            outputs = torch.stack([s.dense(images) for s in self.students[scale]])
            errors.append(regression_error(outputs, target))
            variances.append(predictive_variance(outputs))
            del outputs, target
        return errors, variances

    @torch.no_grad()
    def anomaly_map(self, images: torch.Tensor, score: str = "both") -> torch.Tensor:
        """``[B, 1, H, W]`` normalised multi-scale anomaly map (needs both statistics)."""
        errors, variances = self.raw_scores(images)
        return combine_scales(errors, variances, self.score_stats, score)
