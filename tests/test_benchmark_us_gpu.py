"""benchmarks/us_gpu.py: the budget plan by hand, and the whole script at tiny sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import us_gpu  # noqa: E402


def test_plan_scales_both_counts_by_one_fraction_to_fit_the_budget():
    probes = {"teacher_iteration_s": {17: 0.001, 33: 0.001}, "student_step_s": 0.01, "inference_s": 0.5}
    # recipe: teachers 50,000 x 0.002 = 100 s; students 100 epochs x 10 images x 0.01 = 10 s;
    # fixed 45 s + 30 images x 0.5 s = 60 s -> 170 s. A 115 s budget leaves 55 s = half of 110 s.
    plan = us_gpu.plan(probes, n_train=10, n_eval=30, budget=115.0)
    assert plan["recipe_estimate_s"] == pytest.approx(170.0)
    assert plan["fixed_s"] == pytest.approx(60.0)
    assert plan["fraction"] == pytest.approx(0.5)
    assert (plan["teacher_iterations"], plan["max_epochs"]) == (25_000, 50)
    recipe = us_gpu.plan(probes, n_train=10, n_eval=30, budget=0)  # 0 = the paper recipe
    assert (recipe["fraction"], recipe["teacher_iterations"], recipe["max_epochs"]) == (1.0, 50_000, 100)
    assert us_gpu.plan(probes, 10, 30, budget=1000.0)["fraction"] == 1.0  # never above the recipe
    floor = us_gpu.plan(probes, 10, 30, budget=10.0)  # less than the fixed part: the smallest run
    assert (floor["fraction"], floor["teacher_iterations"], floor["max_epochs"]) == (0.0, 100, 1)
    assert us_gpu.plan(probes, 10, 30, budget=10.0, min_iterations=5)["teacher_iterations"] == 5


@pytest.mark.slow
def test_us_gpu_runs_tiny_on_cpu_and_records_its_row(tmp_path):
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    make_synthetic_mvtec(tmp_path / "data", "widget", n_train=5, n_test_good=2, n_test_defect=2, size=32)
    out = tmp_path / "out"
    # a 1 s budget, below the plan's fixed part (OVERHEAD_S alone is more): the smallest run, by construction
    cmd = [sys.executable, str(REPO / "benchmarks" / "us_gpu.py"), "--device", "cpu", "--tiny", "--budget", "1",
           "--data-dir", str(tmp_path / "data"), "--category", "widget", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / us_gpu.ROW / "quality_row.json").read_text())
    assert record["exit"] == 0 and record["device"] == "CPU"
    chosen = record["plan"]
    assert (chosen["fraction"], chosen["teacher_iterations"], chosen["max_epochs"]) == (0.0, 5, 1)
    assert f"model.teacher_iterations={chosen['teacher_iterations']}" in record["command"]
    assert f"trainer.max_epochs={chosen['max_epochs']}" in record["command"]
    assert record["reduced"]["trainer.max_epochs"] == f"{chosen['max_epochs']} (recipe 100)"
    results = json.loads((out / us_gpu.ROW / "results.json").read_text())
    assert results["config"]["model"]["teacher_iterations"] == chosen["teacher_iterations"]
    assert results["config"]["trainer"]["max_epochs"] == chosen["max_epochs"]
    assert 0.0 <= results["metrics"]["aupro"] <= 1.0
    # the quality table reads the row: its reduced settings and the device in place of the CPU load
    import quality

    line = quality.row_line(us_gpu.ROW, out)
    assert "trainer.max_epochs=" in line and "(recipe 50000)" in line and "; threads " in line
