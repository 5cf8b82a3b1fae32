"""Uninformed Students end to end on the tiny synthetic MVTec folder (all three scales)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY = [
    "data.image_size=24",  # 3 scales x (teacher + 2 students) dense at 24 px: seconds on 2 cores
    "model.n_students=2",
    "model.crop=8",
    "model.teacher_iterations=2",
    "model.teacher_batch_size=8",
    "model.lambda_m=1.0",  # exercise the triplet loss too
]


@pytest.mark.slow
def test_end_to_end_tiny_run(run_tiny, tiny_mvtec):
    results = run_tiny("uninformed_students", *TINY)
    assert results["status"] == "ok" and results["model"] == "uninformed_students"
    metrics = results["metrics"]
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["pixel_threshold_val"] is not None
    assert results["tested_checkpoint"] == "weights after the last training epoch"
    teachers = sorted(p.name for p in (Path(tiny_mvtec) / "teachers").glob("us_teacher_*.pt"))
    # (the session-wide tiny folder may also hold teachers other tests pretrained with other settings)
    assert {name.split("_")[2] for name in teachers} == {"p17", "p33", "p65"}
    last = Path(results["output_dir"]) / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.isfinite(state["model.score_stats"]).all()
    assert torch.isfinite(state["model.descriptor_std"]).all() and state["teacher_ready"].all()
