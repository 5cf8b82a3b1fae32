"""STFPM ensemble LightningModule: all students trained together, STFPM's recipe for each.

One SGD optimizer over every student's parameters on the sum of their STFPM losses is equivalent
to one SGD per student on the same batches (see :mod:`.loss`): SGD's momentum buffer and weight
decay act on each parameter alone and nothing (no gradient clipping) couples the students.

Which epoch of each student is tested: ``checkpoint_rule`` (:mod:`.selection`). With
``per_student`` (default) every validation epoch also computes each student's own STFPM error
(``val/error_student<m>``, one more forward pass of the validation normals) and keeps each
student's best weights (saved in every checkpoint, so a resumed run selects the same). At the end
of training the best students are put together, the thresholds are recomputed on the validation
normals for that ensemble, and the result is written as ``best.ckpt`` and tested. A run tested
from ``last.ckpt`` (``train=false``) does the same at the start of the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.base import _batch_index, _cat, _cat_index, count_parameters
from anomaly_kd.models.components.backbones import backbone_layers
from anomaly_kd.models.components.student_teacher import StudentTeacherModule
from anomaly_kd.models.stfpm_ensemble.loss import ensemble_losses
from anomaly_kd.models.stfpm_ensemble.selection import CHECKPOINT_RULES, StudentSelection
from anomaly_kd.models.stfpm_ensemble.torch_model import STFPMEnsembleModel


class STFPMEnsemble(StudentTeacherModule):
    # checkpoint_rule=joint: as STFPM, the epoch with the lowest mean ensemble map on validation
    # normals is tested (Lightning's ModelCheckpoint); per_student: see the module doc (set in __init__).
    checkpoint_monitor = "val/map_mean"
    checkpoint_mode = "min"

    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        n_students: int = 3,
        seed: int = 0,
        terms: str = "e+v",
        std_correction: int = 0,
        lr: float = 0.4,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        checkpoint_rule: str = "per_student",
        threshold_quantile: float = 0.99,
        fpr_limit: float = 0.3,
        cache_teacher: bool = True,
        cache_teacher_dtype: str = "float32",
    ):
        super().__init__(threshold_quantile=threshold_quantile, fpr_limit=fpr_limit)
        if checkpoint_rule not in CHECKPOINT_RULES:
            raise UserError(f"model.checkpoint_rule={checkpoint_rule!r} must be one of {', '.join(CHECKPOINT_RULES)}.")
        self.save_hyperparameters()
        self.hparams.layers = backbone_layers(backbone, layers)  # None: the backbone's own levels
        self.configure_teacher_cache(cache_teacher, cache_teacher_dtype)
        hp = self.hparams
        self.per_student = checkpoint_rule == "per_student"
        if self.per_student:
            self.checkpoint_monitor = None  # no ModelCheckpoint on val/map_mean: best.ckpt is written here
        self.selection = StudentSelection(n_students)
        self.selection_pending = False  # the weights in memory are not the selected ones
        self.selected_checkpoint: str | None = None  # best.ckpt written at the end of training
        self._val_student_errors: list[torch.Tensor] = []
        self.model = STFPMEnsembleModel(
            hp.backbone, list(hp.layers), hp.pretrained, hp.weights_path,
            hp.n_students, hp.seed, hp.terms, hp.std_correction,
        )  # fmt: skip
        self.input_multiple = max(self.model.teacher.strides)

    def training_loss(self, images: torch.Tensor, teacher_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        teacher_features, student_features = self.model(images, teacher_features)
        losses = ensemble_losses(teacher_features, student_features)
        for m, loss in enumerate(losses):
            self.log(f"train/loss_student{m}", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return torch.stack(losses).sum()

    # ------------------------------------------------------------ per-student checkpoint rule
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if self.per_student:
            self._val_student_errors.append(self.model.student_errors(batch["image"].float()).cpu())

    def on_validation_epoch_end(self) -> None:
        index = _cat_index(self._val_index)
        errors, self._val_student_errors = _cat(self._val_student_errors), []
        super().on_validation_epoch_end()
        if not self.per_student or self.trainer.sanity_checking:
            return
        if not len(errors) and self._world_size() <= 1:
            return
        errors, _ = self._gather_val(errors.reshape(len(index), -1), torch.zeros(len(index)), index)
        if not len(errors):
            return
        per_student = errors.double().mean(dim=0).tolist()  # mean over the validation images
        for m, error in enumerate(per_student):
            self.log(f"val/error_student{m}", error, batch_size=len(errors))
        if any(self.selection.update(per_student, self.current_epoch, self.model.students)):
            self.selection_pending = True

    def apply_selection(self) -> None:
        """Each student's best weights, then the thresholds from validation normals for them."""
        if not (self.per_student and self.selection_pending):
            return
        self.selection.restore(self.model.students)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            self._calibrate_on(datamodule.val_dataloader())
        self.selection_pending = False

    def _calibrate_on(self, loader) -> None:
        was_training = self.training
        self.eval()
        maps, scores, index = [], [], []
        with torch.no_grad():
            for batch in loader:
                m, s = self._maps_and_scores(batch["image"].to(self.device))
                index.append(_batch_index(batch, index))
                maps.append(m.cpu())
                scores.append(s.cpu())
        self.train(was_training)
        maps, scores = self._gather_val(_cat(maps), _cat(scores), _cat_index(index))
        if len(scores):
            self.calibrate(maps, scores)

    def on_train_end(self) -> None:
        if not (self.per_student and self.selection_pending):
            return
        self.apply_selection()
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.dirpath:
            path = Path(callback.dirpath) / "best.ckpt"
            self.trainer.save_checkpoint(path)
            self.selected_checkpoint = str(path)

    def on_test_start(self) -> None:
        self.apply_selection()  # tested from a checkpoint written during training (last.ckpt)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["student_selection"] = {**self.selection.state_dict(), "pending": self.selection_pending}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("student_selection")
        if state is not None:
            self.selection.load_state_dict(state)
            self.selection_pending = bool(state["pending"]) and self.per_student

    def loaded_epochs(self) -> int | list[int] | None:
        """Per student, the epoch its weights come from (the per-student rule); else the checkpoint's."""
        if self.per_student and all(e is not None for e in self.selection.epochs):
            return list(self.selection.epochs)
        return super().loaded_epochs()

    def student_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.students.parameters()

    def model_summary(self) -> dict:
        students = self.model.students
        return {
            "teacher_parameters": count_parameters(self.model.teacher),
            "student_parameters": count_parameters(students[0]),
            "n_students": len(students),
            "students_parameters_total": count_parameters(students),
        }
