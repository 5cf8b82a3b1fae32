"""benchmarks/score_rules.py: the image-score rule chosen on synthetic defects of validation
normals, checked against the run's own test results (the same checkpoint, the same maps)."""

from __future__ import annotations

import json

import pytest

from anomaly_kd.errors import UserError
from tests.benchmarks.test_benchmark_scripts import load_script, tiny_stfpm_run


def test_choice_is_the_highest_synthetic_auroc_and_ties_go_to_the_earlier_rule():
    script = load_script("score_rules")
    rules = ("model", "blur2", "blur4")
    val = {"model": {"image_auroc": 0.8}, "blur2": {"image_auroc": 0.9}, "blur4": {"image_auroc": 0.9}}
    assert script.choose(val, rules) == "blur2"
    val["model"]["image_auroc"] = 0.9
    assert script.choose(val, rules) == "model"


@pytest.mark.slow
def test_score_rules_on_a_trained_run_reproduces_its_test_results(tmp_path, capsys):
    results, run_dir = tiny_stfpm_run(tmp_path)
    script = load_script("score_rules")
    assert script.main([str(run_dir), "--rules", "model,max,blur2"]) == 0
    record = json.loads((run_dir / "score_rules.json").read_text())
    val, test = record["val_synthetic"], record["test"]
    assert record["n_val_normals"] == 2  # 20% of 10 training normals
    assert record["chosen"] == script.choose(val["rules"], ("model", "max", "blur2"))
    # the method's own rule on test is what the run itself computed from the same checkpoint
    metrics = results["metrics"]
    assert test["rules"]["model"]["image_auroc"] == pytest.approx(metrics["image_auroc"], abs=1e-12)
    assert test["rules"]["model"]["image_ap"] == pytest.approx(metrics["image_ap"], abs=1e-12)
    assert test["pixel_auroc"] == pytest.approx(metrics["pixel_auroc"], abs=1e-12)
    assert test["aupro"] == pytest.approx(metrics["aupro"], abs=1e-12)
    assert test["rules"]["max"] == test["rules"]["model"]  # STFPM's own score is the map's maximum
    out = capsys.readouterr().out
    assert f"| {run_dir.name} | {record['chosen']} |" in out and "**chosen**" in out


def test_a_folder_without_results_or_an_unknown_rule_is_one_clear_error(tmp_path):
    script = load_script("score_rules")
    with pytest.raises(UserError, match="has no results.json"):
        script.main([str(tmp_path)])
    with pytest.raises(UserError, match="unknown image-score rule 'median'"):
        script.main([str(tmp_path), "--rules", "model,median"])  # before any folder is read


def test_the_command_line_says_it_in_one_line(tmp_path):
    """From the shell: exit status 2 and exactly one line on stderr (no traceback, no echo of the
    log record when logging has no handlers)."""
    import subprocess
    import sys

    from tests.helpers import REPO

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "score_rules.py"), str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path} has no results.json: pass the folder of a "
                                                "finished `python -m anomaly_kd.run` job."]  # fmt: skip
