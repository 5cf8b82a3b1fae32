"""Uninformed Students LightningModule.

Before the first training step (``on_fit_start``): each scale's teacher is loaded from
``teacher_path`` or from the cache folder, or pretrained and saved there; then the teacher's
per-dimension descriptor mean and std over the training images are measured (one pass over the
train loader, whole images). Training: every student of every scale regresses the normalised
teacher descriptors at every position of each training image (or of one random ``crop`` x
``crop`` tile of it, every position equally often: ``torch_model.crop_tiles``). Validation
(normal images held out from train): the regression error and variance maps of every scale are
collected, their means and stds become ``score_stats`` (a buffer, saved in checkpoints), and the
resulting normalised maps give the thresholds. Tested: the weights after the last epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from anomaly_kd.data.images import image_to_float
from anomaly_kd.errors import UserError
from anomaly_kd.models.components.base import AnomalyModule, _batch_index, _cat_index, count_parameters
from anomaly_kd.models.uninformed_students.anomaly_map import SCORES, combine_scales, mean_std
from anomaly_kd.models.uninformed_students.loss import COMPACTNESS_OVER, student_loss
from anomaly_kd.models.uninformed_students.teacher_pretraining import (
    PretrainConfig,
    load_teacher_state,
    pretrain_teacher,
    save_teacher,
    teacher_file,
    teacher_lock,
)
from anomaly_kd.models.uninformed_students.torch_model import UninformedStudentsModel

log = logging.getLogger(__name__)


class UninformedStudents(AnomalyModule):
    # The paper trains for a fixed number of epochs; the validation statistics are normalisers,
    # not a model-selection criterion (the normalised val map has mean ~0 by construction).
    checkpoint_monitor = None

    def __init__(
        self,
        patch_sizes: Sequence[int] = (17, 33, 65),
        n_students: int = 3,
        descriptor_dim: int = 128,
        score: str = "both",
        crop: int | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        seed: int = 0,
        # teacher: file, cache and pretraining recipe
        teacher_path: str | Sequence[str] | None = None,
        teacher_dir: str = "data/teachers",
        teacher_data: str = "skimage",
        backbone: str = "efficientnet_lite0",  # the distillation target (model.backbone, as every method)
        pretrained: bool = True,
        weights_path: str | None = None,
        teacher_iterations: int = 50_000,
        teacher_batch_size: int = 64,
        teacher_lr: float = 2e-4,
        teacher_weight_decay: float = 1e-5,
        lambda_k: float = 1.0,
        lambda_m: float = 0.0,
        lambda_c: float = 1.0,
        triplet_margin: float = 1.0,
        compactness: str = "squared",
        compactness_over: str = "dimensions",
        triplet_shift: float = 0.1,
        triplet_luminance: float = 0.2,
        triplet_noise: float = 0.02,
        kd_input_size: int | None = None,
        threshold_quantile: float = 0.99,
        fpr_limit: float = 0.3,
        kd_backbone: str | None = None,  # the former name of `backbone` (older configs and checkpoints); wins when given
    ):
        super().__init__(threshold_quantile=threshold_quantile, fpr_limit=fpr_limit)
        self.save_hyperparameters()
        if kd_backbone is not None:
            self.hparams.backbone = kd_backbone
        if compactness_over not in COMPACTNESS_OVER:
            raise UserError(f"model.compactness_over={compactness_over} must be one of {', '.join(COMPACTNESS_OVER)}.")
        if score not in SCORES:
            raise UserError(f"model.score={score} must be one of {', '.join(SCORES)}.")
        if not patch_sizes or n_students < 2:
            raise UserError("Uninformed Students needs model.patch_sizes and model.n_students >= 2.")
        if crop is not None and crop < 1:
            raise UserError(f"model.crop={crop} must be null (whole images) or a positive size.")
        self.model = UninformedStudentsModel(patch_sizes, n_students, descriptor_dim, seed)
        self.register_buffer("teacher_ready", torch.zeros(len(patch_sizes), dtype=torch.bool))
        self.input_multiple = 1  # dense inference works for any image size
        self._val_raw: list[torch.Tensor] = []  # per batch [B, 2 * scales, H, W]: e maps, then v maps
        self._val_index: list = []

    # ---------------------------------------------------------------- teachers and statistics
    def pretrain_config(self) -> PretrainConfig:
        hp = self.hparams
        return PretrainConfig(
            descriptor_dim=hp.descriptor_dim, backbone=hp.backbone, pretrained=hp.pretrained,
            weights_path=hp.weights_path, data=str(hp.teacher_data), iterations=hp.teacher_iterations,
            batch_size=hp.teacher_batch_size, lr=hp.teacher_lr, weight_decay=hp.teacher_weight_decay,
            lambda_k=hp.lambda_k, lambda_m=hp.lambda_m, lambda_c=hp.lambda_c, margin=hp.triplet_margin,
            compactness=hp.compactness, compactness_over=hp.compactness_over, shift=hp.triplet_shift, luminance=hp.triplet_luminance,
            noise=hp.triplet_noise, kd_input_size=hp.kd_input_size, seed=hp.seed,
        )  # fmt: skip

    def given_teacher_paths(self) -> list[str | None]:
        path, sizes = self.hparams.teacher_path, self.model.patch_sizes
        if path in (None, ""):
            return [None] * len(sizes)
        if isinstance(path, str):
            if "{p}" in path:
                return [path.replace("{p}", str(p)) for p in sizes]
            if len(sizes) > 1:
                raise UserError(
                    "model.teacher_path is one file but there are several patch sizes: give a list "
                    "(one per model.patch_sizes entry) or a path containing {p}."
                )
            return [path]
        paths = list(path)
        if len(paths) != len(sizes):
            raise UserError(f"model.teacher_path has {len(paths)} entries for {len(sizes)} patch sizes.")
        return paths

    def prepare_teachers(self, progress: bool = True) -> None:
        """Load (or pretrain and cache) the teacher of every scale that has none yet."""
        cfg = self.pretrain_config()
        for scale, (p, given) in enumerate(zip(self.model.patch_sizes, self.given_teacher_paths())):
            if bool(self.teacher_ready[scale]):
                continue
            path = given or teacher_file(self.hparams.teacher_dir, p, cfg)
            if given is None and not path.is_file() and self._is_global_zero():
                # jobs of a parallel sweep that need the same teacher: one pretrains, the others wait
                with teacher_lock(path):
                    if not path.is_file():
                        log.info("Pretraining the p=%d teacher (%d iterations) -> %s", p, cfg.iterations, path)
                        net, losses = pretrain_teacher(p, cfg, self.device, progress)
                        save_teacher(path, net, cfg, losses)
                        log.info("Teacher p=%d final losses: %s", p, losses)
            self._barrier()
            state = load_teacher_state(path, p, self.hparams.descriptor_dim)
            self.model.teachers[scale].load_state_dict(state)  # no dropout/BN: mode-independent
            self.teacher_ready[scale] = True
            log.info("Teacher p=%d loaded from %s", p, path)

    @torch.no_grad()
    def compute_descriptor_stats(self, loader, progress: bool = True) -> None:
        """Per-dimension mean and std of each teacher's dense output over the training images."""
        from tqdm.auto import tqdm

        n = len(self.model.patch_sizes)
        total = torch.zeros(n, self.hparams.descriptor_dim, dtype=torch.float64, device=self.device)
        squares, count = torch.zeros_like(total), 0
        for batch in tqdm(loader, desc="teacher descriptor statistics", disable=not progress):
            images = image_to_float(batch["image"].to(self.device))  # a plain loop: no Lightning transfer hook
            for scale in range(n):
                out = self.model.teacher_dense(scale, images).double()
                total[scale] += out.sum(dim=(0, 2, 3))
                squares[scale] += out.pow(2).sum(dim=(0, 2, 3))
            count += images.shape[0] * images.shape[2] * images.shape[3]
        if count == 0:
            raise UserError("No training images to measure the teacher's descriptor statistics.")
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
        self.model.descriptor_mean.copy_(mean.float())
        self.model.descriptor_std.copy_(std.float())

    def on_fit_start(self) -> None:
        progress = self._progress()
        self.prepare_teachers(progress)
        if not self.model.has_descriptor_stats():
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None:
                raise UserError("Uninformed Students needs a datamodule (for the teacher statistics).")
            self.compute_descriptor_stats(datamodule.train_dataloader(), progress)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images = batch["image"]
        loss = images.new_zeros(())
        logged = dict(on_step=True, on_epoch=True, batch_size=len(images))
        for scale, p in enumerate(self.model.patch_sizes):
            target, outputs = self.model.training_pair(scale, images, self.hparams.crop)
            scale_loss = sum(student_loss(out, target) for out in outputs)
            self.log(f"train/loss_p{p}", scale_loss / len(outputs), **logged)
            loss = loss + scale_loss
        self.log("train/loss", loss, prog_bar=True, **logged)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One Adam over all students: each parameter gets gradients from its own student's loss
        # only, so this equals training the students separately (on the same batches).
        return torch.optim.Adam(
            self.model.students.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    # ---------------------------------------------------------------- validation (normals only)
    def on_validation_epoch_start(self) -> None:
        self._val_raw, self._val_index = [], []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        errors, variances = self.model.raw_scores(batch["image"].float())
        # [B, 2 * scales, H, W]: every scale's e, then every scale's v, for one gather below
        self._val_raw.append(torch.stack([*errors, *variances], dim=1).cpu())
        self._val_index.append(_batch_index(batch, self._val_index))

    def on_validation_epoch_end(self) -> None:
        if not self._val_raw and self._world_size() <= 1:
            return
        raw = torch.cat(self._val_raw) if self._val_raw else torch.zeros(0)
        # under DDP: every rank's images, each once (the shard sampler's padding repeats dropped)
        raw, _ = self._gather_val(raw, torch.zeros(len(raw)), _cat_index(self._val_index))
        self._val_raw, self._val_index = [], []
        if not len(raw):
            return
        n = len(self.model.patch_sizes)
        errors, variances = list(raw[:, :n].unbind(1)), list(raw[:, n:].unbind(1))
        stats = torch.tensor([[*mean_std(e), *mean_std(v)] for e, v in zip(errors, variances)])
        self.model.score_stats.copy_(stats.to(self.model.score_stats))
        maps = combine_scales(errors, variances, stats, self.hparams.score)
        scores = maps.flatten(1).amax(dim=1)
        self.calibrate(maps, scores)
        # one value per epoch over every validation normal (logged once, so the value is the same):
        # batch_size given, as everywhere else, so that Lightning never looks into a batch for it
        logged = dict(sync_dist=False, batch_size=len(scores))
        for s, p in enumerate(self.model.patch_sizes):
            self.log(f"val/e_mean_p{p}", float(stats[s, 0]), **logged)
            self.log(f"val/v_mean_p{p}", float(stats[s, 2]), **logged)
        self.log("val/map_mean", maps.mean().item(), **logged)
        self.log("val/score_mean", scores.mean().item(), **logged)

    # ---------------------------------------------------------------- maps
    def anomaly_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.model.has_score_stats():
            raise UserError(
                "Uninformed Students normalises its scores with statistics of validation normals, "
                "and none were measured: use data.val_split > 0 (and let validation run)."
            )
        maps = self.model.anomaly_map(images, self.hparams.score)
        return maps, maps.flatten(1).amax(dim=1)  # image score: the map's maximum (ours)

    def model_summary(self) -> dict[str, int]:
        return {
            "teacher_parameters": count_parameters(self.model.teachers),
            "student_parameters": count_parameters(self.model.students),
        }

    # ---------------------------------------------------------------- helpers
    def _progress(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.progress_bar_callback is not None

    def _is_global_zero(self) -> bool:
        return self._trainer is None or self.trainer.is_global_zero

    def _barrier(self) -> None:
        if self._trainer is not None and self.trainer.world_size > 1:
            self.trainer.strategy.barrier("uninformed_students_teacher")

