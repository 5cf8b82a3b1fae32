"""The STFPM ensemble's per-student checkpoint rule survives a resume: each student's best epoch
is kept in every checkpoint, so stopping after the first epoch and resuming from `last.ckpt`
selects the same epochs, weights and metrics as a run that never stopped (same process, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import compose_config
from tests.reliability.reliability_helpers import assert_same_metrics, assert_same_weights, base_overrides

pytestmark = pytest.mark.slow

EPOCHS = 3


def test_per_student_selection_resumes_to_the_uninterrupted_result(tmp_path):
    from anomaly_kd.data.synthetic import make_synthetic_mvtec
    from anomaly_kd.pipeline import run

    root = make_synthetic_mvtec(tmp_path / "data", category="widget", n_train=10, n_test_good=4,
                                n_test_defect=4, size=32)
    overrides = [*base_overrides("stfpm_ensemble", root), "data.image_size=32", "model.checkpoint_rule=per_student"]
    reference = run(compose_config([*overrides, f"trainer.max_epochs={EPOCHS}"], tmp_path / "reference"))

    out = tmp_path / "stopped"
    run(compose_config([*overrides, "trainer.max_epochs=1"], out))  # as if stopped after epoch 0
    resumed = run(compose_config([*overrides, f"trainer.max_epochs={EPOCHS}", "ckpt_path=last"], out))

    assert resumed["epochs_trained"] == reference["epochs_trained"] == EPOCHS
    assert_same_metrics(reference["metrics"], resumed["metrics"])
    for name in ("best.ckpt", "last.ckpt"):
        assert_same_weights(out / "checkpoints" / name, tmp_path / "reference" / "checkpoints" / name)
    assert Path(resumed["tested_checkpoint"]).name == "best.ckpt"
    ref_ckpt = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", weights_only=False)
    ours = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    # the per-student bests travel in every checkpoint, and are the same after the resume
    assert _same(ours["student_selection"], ref_ckpt["student_selection"])


def _same(a, b) -> bool:
    """Exact equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
