"""Which weights of each ensemble student are tested (``model.checkpoint_rule``).

- ``per_student`` (default): the thesis trains each of its 3 students as a separate STFPM run, so
  each student keeps the weights of ITS OWN best epoch by STFPM's rule (gdwang08/STFPM main.py
  ``train_val``: ``if err < min_err``, err = the mean over validation normals of that student's
  own STFPM anomaly map). :class:`StudentSelection` tracks, per student, the lowest error, its epoch
  and a copy of the weights; the module puts them back before testing.
- ``joint`` (option; the project's earlier rule): one epoch for all students, the one with the
  lowest mean ensemble (error + variance) map on validation normals, via Lightning's ModelCheckpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

CHECKPOINT_RULES = ("per_student", "joint")


class StudentSelection:
    """Per student: lowest validation error so far (strictly lower replaces, as ``err < min_err``),
    its epoch, and a CPU copy of the student's weights at that epoch."""

    def __init__(self, n_students: int):
        self.errors: list[float] = [float("inf")] * int(n_students)
        self.epochs: list[int | None] = [None] * int(n_students)
        self.states: list[dict[str, torch.Tensor] | None] = [None] * int(n_students)

    def update(self, errors: Sequence[float], epoch: int, students: Sequence[nn.Module]) -> list[bool]:
        """Record one validation epoch; returns, per student, whether it is its new best."""
        if len(errors) != len(self.errors) or len(students) != len(self.errors):
            raise ValueError(f"{len(errors)} errors and {len(students)} students for {len(self.errors)} students")
        improved = []
        for m, (error, student) in enumerate(zip(errors, students)):
            better = float(error) < self.errors[m]
            if better:
                self.errors[m], self.epochs[m] = float(error), int(epoch)
                self.states[m] = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
            improved.append(better)
        return improved

    @property
    def complete(self) -> bool:
        return all(state is not None for state in self.states)

    def restore(self, students: Sequence[nn.Module]) -> None:
        """Load each student's best weights (a student never validated keeps its own)."""
        for student, state in zip(students, self.states):
            if state is not None:
                student.load_state_dict(state)

    def state_dict(self) -> dict:
        return {"errors": list(self.errors), "epochs": list(self.epochs), "states": copy.copy(self.states)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["errors"]) != len(self.errors):
            raise ValueError(f"checkpoint has {len(state['errors'])} students, the model {len(self.errors)}")
        self.errors = [float(e) for e in state["errors"]]
        self.epochs = list(state["epochs"])
        self.states = list(state["states"])
