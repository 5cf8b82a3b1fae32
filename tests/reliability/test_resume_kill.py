"""Kill a run (SIGTERM, SIGKILL) in training and in testing; resume; same numbers as without a stop.

The reference is an uninterrupted in-process run with the same config and seed. The killed runs
are real ``python -m anomaly_kd.run`` processes; the kill is sent as soon as the file or log line
that marks the moment appears (a checkpoint of a finished epoch, the "Testing" line). Runs that
are not killed (the last resume, a test-only rerun) go in-process: same code, no interpreter
start-up. SIGTERM in the test stage is sent by the run to itself (a callback), in-process too.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.helpers import compose_config
from tests.reliability.reliability_helpers import (
    SIGKILL,
    SIGTERM,
    assert_same_metrics,
    assert_same_weights,
    base_overrides,
    file_version,
    kill,
    last_line,
    read_json,
    start_cli,
    wait_for,
)

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = tmp_path_factory.mktemp("resume_data")
    make_synthetic_mvtec(root, category="widget", n_train=10, n_test_good=6, n_test_defect=6, size=32)
    return root


@pytest.fixture(scope="module")
def overrides(data_root) -> list[str]:
    return [*base_overrides("stfpm", data_root), f"trainer.max_epochs={EPOCHS}", "data.image_size=32"]


@pytest.fixture(scope="module")
def reference(overrides, tmp_path_factory) -> dict:
    """The uninterrupted run: same config and seed, in this process."""
    from anomaly_kd.pipeline import run

    return run(compose_config(overrides, tmp_path_factory.mktemp("reference") / "run"))


def _command_after(marker: str, stderr: str) -> list[str]:
    line = last_line(stderr)
    assert line.startswith("error: interrupted by SIGTERM") and marker in line, stderr[-3000:]
    words = shlex.split(line.split(marker, 1)[1])
    assert words[:3] == ["python", "-m", "anomaly_kd.run"], words
    return words[3:]


def test_sigterm_then_sigkill_in_training_resume_to_the_uninterrupted_result(overrides, reference, tmp_path):
    out = tmp_path / "job"
    last = out / "checkpoints" / "last.ckpt"

    # 1. SIGTERM once the first epoch's checkpoint exists: exit 143, the resume command printed,
    #    the checkpoint kept, a results.json that says failed/interrupted (no metrics).
    proc = start_cli([*overrides, f"hydra.run.dir={out}"], cwd=tmp_path)
    wait_for(last.is_file, proc, what="the first checkpoint")
    rc, err = kill(proc, SIGTERM)
    assert rc == 143, err[-3000:]
    assert "Traceback" not in err
    resume = _command_after("Resume with: ", err)
    assert f"ckpt_path={last}" in resume and f"hydra.run.dir={out}" in resume
    record = read_json(out / "results.json")
    assert record["status"] == "failed" and record["interrupted"] is True and "metrics" not in record
    assert last.is_file()

    # 2. The printed command resumes; SIGKILL it as soon as it has written one more epoch.
    before = file_version(last)
    proc = start_cli(resume, cwd=tmp_path)
    wait_for(lambda: file_version(last) not in (before, None), proc, what="a resumed epoch's checkpoint")
    rc, _ = kill(proc, SIGKILL)
    assert rc == -SIGKILL
    assert read_json(out / "results.json")["status"] == "failed"  # the job is not done yet

    # 3. ckpt_path=last in the same folder finishes the job.
    from anomaly_kd.pipeline import run

    run(compose_config([*overrides, "ckpt_path=last"], out))
    done = read_json(out / "results.json")
    assert done["status"] == "ok" and done["epochs_trained"] == reference["epochs_trained"] == EPOCHS
    assert done["resumed_from"] == str(last)
    assert_same_metrics(reference["metrics"], done["metrics"])
    ref_dir = Path(reference["output_dir"])
    # the anomaly maps are functions of the weights: same weights, same maps; scores.csv compares
    # the per-image scores directly
    assert (out / "scores.csv").read_text() == (ref_dir / "scores.csv").read_text()
    assert_same_weights(out / "checkpoints" / "last.ckpt", ref_dir / "checkpoints" / "last.ckpt")
    assert_same_weights(out / "checkpoints" / "best.ckpt", ref_dir / "checkpoints" / "best.ckpt")


def test_sigkill_during_testing_leaves_no_results_and_the_test_stage_alone_completes(overrides, reference, tmp_path):
    import subprocess

    from anomaly_kd.pipeline import run

    best = Path(reference["tested_checkpoint"])
    test_only = [*overrides, "train=false", f"ckpt_path={best}"]
    out = tmp_path / "killed"
    proc = start_cli([*test_only, f"hydra.run.dir={out}"], cwd=tmp_path, stdout=subprocess.PIPE)
    for line in proc.stdout:  # Hydra's log goes to stdout; the pipeline logs "Testing <ckpt>"
        if "Testing " in line:
            break
    else:
        raise AssertionError(f"no 'Testing' line (rc={proc.wait()}): {proc.stderr.read()[-3000:]}")
    rc, _ = kill(proc, SIGKILL)
    assert rc == -SIGKILL
    assert not (out / "results.json").exists()  # written last, by an atomic rename
    assert not list(out.glob(".results.json*")) and not list(out.glob(".scores.csv*"))

    run(compose_config(test_only, out))  # the test stage alone completes the job
    done = read_json(out / "results.json")
    assert done["status"] == "ok"
    assert_same_metrics(reference["metrics"], done["metrics"])
    assert (out / "scores.csv").read_text() == (Path(reference["output_dir"]) / "scores.csv").read_text()


def test_sigterm_during_testing_prints_the_rerun_and_keeps_finished_results(overrides, reference, tmp_path, monkeypatch, cli):
    """SIGTERM (sent by the run to itself at the first test batch) through the real entry point:
    exit 143, the command that reruns the test stage, and an ok results.json already in the folder
    (a re-test of a finished run) is not replaced by the failure record."""
    import json
    import os

    import pytorch_lightning as pl

    import anomaly_kd.pipeline as pipeline

    class SigtermAtFirstTestBatch(pl.Callback):
        def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            if batch_idx == 0:
                os.kill(os.getpid(), SIGTERM)

    build_trainer = pipeline.build_trainer

    def with_sigterm(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.callbacks.append(SigtermAtFirstTestBatch())
        return trainer

    out = tmp_path / "retest"
    out.mkdir()
    finished = {"status": "ok", "metrics": {"image_auroc": 0.5}}
    (out / "results.json").write_text(json.dumps(finished))
    test_only = [*overrides, "train=false", f"ckpt_path={reference['tested_checkpoint']}", f"hydra.run.dir={out}"]

    monkeypatch.setattr(pipeline, "build_trainer", with_sigterm)
    result = cli(*test_only)
    monkeypatch.setattr(pipeline, "build_trainer", build_trainer)
    assert result.code == 143, result.err[-3000:]
    assert "Traceback" not in result.err
    rerun = _command_after("Run the test again with: ", result.err)
    assert "train=false" in rerun and f"hydra.run.dir={out}" in rerun
    assert json.loads((out / "results.json").read_text()) == finished
    beside = read_json(out / "results.failed.json")  # the interruption is recorded beside them
    assert beside["status"] == "failed" and beside["interrupted"] is True and "train=false" in beside["resume_command"]

    result = cli(*rerun)
    assert result.code == 0, result.err[-3000:]
    assert_same_metrics(reference["metrics"], read_json(out / "results.json")["metrics"])
