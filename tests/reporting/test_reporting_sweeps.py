"""Real sweeps through `python -m anomaly_kd.run -m ...` on tiny data: tables, failures, launchers, W&B."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest

from anomaly_kd.reporting.wandb_offline import find_offline_runs, read_offline_run, read_table
from tests.reporting.sweep_helpers import cli, fast_overrides, last_line

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory, two_category_mvtec, wandb_env):
    """category=widget,nothere x seed=0,1 with logger=wandb: 2 jobs train, 2 fail (no such category)."""
    work = tmp_path_factory.mktemp("sweep")
    sweep = work / "sw"
    proc = cli(["-m", *fast_overrides(two_category_mvtec), "category=widget,nothere", "seed=0,1",
                "logger=wandb", "logger.wandb.project=kd_tests", "logger.wandb.tags=[unit]",
                f"hydra.sweep.dir={sweep}"], cwd=work, env_extra=wandb_env)
    return proc, sweep


def job_results(sweep: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for path in sweep.rglob("results.json"):
        saved = json.loads(path.read_text())
        out[(saved["category"], saved["seed"])] = saved
    return out


def test_sweep_runs_every_job_records_failures_and_exits_non_zero(wandb_sweep):
    proc, sweep = wandb_sweep
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert last_line(proc.stderr) == f"error: 2 of 4 jobs failed (see 'Failed jobs' in {sweep / 'results.md'})"
    results = job_results(sweep)
    assert set(results) == {("widget", 0), ("widget", 1), ("nothere", 0), ("nothere", 1)}
    assert results[("widget", 0)]["status"] == "ok" and results[("widget", 1)]["status"] == "ok"
    failed = results[("nothere", 1)]
    assert failed["status"] == "failed" and "nothere" in failed["error"] and "\n" not in failed["error"]
    assert (failed["model"], failed["data"], failed["config"]["seed"]) == ("stfpm", "mvtec", 1)
    # readable, distinct job folders
    ok_dir = Path(results[("widget", 1)]["output_dir"])
    assert ok_dir.relative_to(sweep).parts[:3] == ("stfpm", "mvtec", "widget")
    assert re.fullmatch(r"seed1_job\d", ok_dir.name)
    # per-run visuals
    for name in ("curves.png", "score_histogram.png"):
        assert (ok_dir / name).stat().st_size > 1000, name
    assert list((ok_dir / "images").glob("*.png"))


def test_sweep_tables_hold_mean_std_over_seeds_and_the_failed_jobs(wandb_sweep):
    _, sweep = wandb_sweep
    results = job_results(sweep)
    rows = list(csv.DictReader(io.StringIO((sweep / "results.csv").read_text())))
    widget = next(r for r in rows if r["category"] == "widget")
    values = [results[("widget", s)]["metrics"]["image_auroc"] for s in (0, 1)]
    assert float(widget["image_auroc_mean"]) == pytest.approx(statistics.fmean(values))
    assert float(widget["image_auroc_std"]) == pytest.approx(statistics.stdev(values))
    assert widget["n_seeds"] == "2" and widget["status"] == "ok"
    nothere = next(r for r in rows if r["category"] == "nothere")
    assert nothere["status"] == "failed" and nothere["n_failed"] == "2" and "nothere" in nothere["errors"]
    md = (sweep / "results.md").read_text()
    assert "## Failed jobs (2 of 4)" in md
    assert re.search(r"\| stfpm \| mvtec \| widget \| 2 \| \d\.\d{4} ± \d\.\d{4} \|", md)
    assert "**mean**" in md and "1/2 categories" in md
    jobs = list(csv.DictReader(io.StringIO((sweep / "jobs.csv").read_text())))
    assert sorted(j["status"] for j in jobs) == ["failed", "failed", "ok", "ok"]


def test_report_command_rebuilds_the_same_tables(wandb_sweep, tmp_path):
    _, sweep = wandb_sweep
    before = (sweep / "results.csv").read_text()
    (sweep / "results.csv").unlink()
    (sweep / "results.md").unlink()
    proc = cli([str(sweep)], cwd=tmp_path, module="anomaly_kd.report")
    assert proc.returncode == 0, proc.stderr
    assert (sweep / "results.csv").read_text() == before
    assert "## Failed jobs (2 of 4)" in (sweep / "results.md").read_text()


def test_wandb_gets_one_run_per_job_and_a_summary_run(wandb_sweep):
    _, sweep = wandb_sweep
    runs = [read_offline_run(d) for d in find_offline_runs(sweep)]
    jobs = [r for r in runs if r["job_type"] == "train"]
    summary_runs = [r for r in runs if r["job_type"] == "sweep-summary"]
    assert len(summary_runs) == 1
    # every job that got as far as the logger has its own run (a failing job's run is closed as
    # failed), all grouped by the sweep name
    names = sorted(r["name"] for r in jobs)
    assert [n for n in names if "widget" in n] == ["stfpm-mvtec-widget-seed0", "stfpm-mvtec-widget-seed1"]
    assert set(names) <= {f"stfpm-mvtec-{c}-seed{s}" for c in ("widget", "nothere") for s in (0, 1)}
    assert {r["group"] for r in runs} == {sweep.name} and {r["project"] for r in runs} == {"kd_tests"}
    assert all("unit" in r["tags"] for r in runs)
    results = job_results(sweep)
    for run in jobs:
        category, seed = run["name"].split("-")[2], int(run["name"].rsplit("seed", 1)[1])
        assert run["config"]["model"]["name"] == "stfpm" and run["config"]["category"] == category
        if category == "nothere":
            assert run["exit_code"] == 1
            continue
        assert run["exit_code"] == 0
        summary, metrics = run["summary"], results[(category, seed)]["metrics"]
        assert summary["test/image_auroc"] == pytest.approx(metrics["image_auroc"])
        assert summary["test/aupro"] == pytest.approx(metrics["aupro"])
        assert any("train/loss" in key for row in run["history"] for key in row)  # training curves
        scores = read_table(run["dir"], summary["test/scores"])
        assert scores["columns"] == ["path", "defect", "label", "score"]
        assert len(scores["data"]) == metrics["n_images"]
        assert summary["test/overlays"]["count"] >= 2
        assert summary["test/masks"]["count"] >= 2
        masks = [f for f in run["files"] if f.endswith(".mask.png")]
        assert masks  # ground-truth (and thresholded map) masks on the test images
        assert any("curves" in f for f in run["files"]) and any("histogram" in f for f in run["files"])
    (summary_run,) = summary_runs
    assert summary_run["summary"]["n_jobs"] == 4 and summary_run["summary"]["n_failed"] == 2
    table = read_table(summary_run["dir"], summary_run["summary"]["results"])
    assert {"model", "category", "image_auroc_mean", "image_auroc_std"} <= set(table["columns"])
    assert [row[table["columns"].index("category")] for row in table["data"]] == ["nothere", "widget", "mean"]
    failed = read_table(summary_run["dir"], summary_run["summary"]["failed_jobs"])
    assert len(failed["data"]) == 2


def _pids(run_log: Path) -> set[int]:
    return {int(p) for p in re.findall(r"^pid=(\d+) ", run_log.read_text(), re.M)}


def test_joblib_launcher_runs_jobs_in_parallel_processes(two_category_mvtec, tmp_path):
    sweep = tmp_path / "sw"
    proc = cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *fast_overrides(two_category_mvtec),
                "category=widget,gadget,nothere", "logger=none", f"hydra.sweep.dir={sweep}",
                'hydra.job_logging.formatters.simple.format="pid=%(process)d %(message)s"'], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the job in a worker process failed, the others ran
    assert last_line(proc.stderr).startswith("error: 1 of 3 jobs failed")
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout
    results = job_results(sweep)
    assert {k: v["status"] for k, v in results.items()} == {
        ("widget", 0): "ok", ("gadget", 0): "ok", ("nothere", 0): "failed"}
    pids = [_pids(Path(r["output_dir"]) / "run.log") for r in results.values()]
    assert all(len(p) == 1 for p in pids), pids
    assert len(set().union(*pids)) == 2, pids  # the jobs ran in the 2 worker processes of the pool
    md = (sweep / "results.md").read_text()
    assert "2/3 categories" in md and "## Failed jobs (1 of 3)" in md


def test_submitit_launcher_runs_a_sweep_point_as_a_job(two_category_mvtec, tmp_path):
    sweep = tmp_path / "sw"
    proc = cli(["-m", "hydra/launcher=slurm_local", *fast_overrides(two_category_mvtec), "category=gadget",
                "logger=none", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((sweep / ".submitit").rglob("*_result.pkl"))  # went through submitit's executor
    (saved,) = job_results(sweep).values()
    assert saved["status"] == "ok" and saved["category"] == "gadget"
    assert "| stfpm | mvtec | gadget | 1 |" in (sweep / "results.md").read_text()


def test_benchmark_mvtec_all_sweeps_15_categories_and_records_each_failure(tmp_path):
    sweep = tmp_path / "sw"
    # an invalid value makes every job fail at once (before any data or model is built)
    proc = cli(["-m", "benchmark=mvtec_all", "trainer.max_epochs=-3", "logger=none",
                f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 1
    assert last_line(proc.stderr).startswith("error: 15 of 15 jobs failed")
    from anomaly_kd.data import MVTEC_CATEGORIES

    results = job_results(sweep)
    assert {c for c, _ in results} == set(MVTEC_CATEGORIES)
    assert {r["data"] for r in results.values()} == {"mvtec"}
    md = (sweep / "results.md").read_text()
    assert "## Failed jobs (15 of 15)" in md and md.count("trainer.max_epochs=-3 is negative") == 15


def test_ddp_in_a_local_multirun_is_refused_before_any_job(tmp_path):
    sweep = tmp_path / "sw"
    proc = cli(["-m", "trainer=ddp", "category=brick,grass", "model.pretrained=false",
                f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 2
    line = last_line(proc.stderr)
    assert line.startswith("error: trainer.strategy=ddp with 2 processes") and "hydra/launcher=slurm" in line
    assert not list(sweep.rglob("results.json"))


def test_single_run_crash_exits_1_with_the_error_last_and_a_failed_results_json(tmp_path):
    out = tmp_path / "run"
    proc = cli(["+trainer.no_such_option=1", "model.pretrained=false", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert proc.returncode == 1
    line = last_line(proc.stderr)
    assert line.startswith("error: ") and "no_such_option" in line
    assert "Traceback" in proc.stderr  # a crash keeps its traceback (above the last line)
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "failed" and "no_such_option" in saved["error"] and saved["category"] == "brick"
