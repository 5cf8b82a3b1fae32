"""Sweep tables from job folders: statistics, mean rows, paper columns, variants, failures, CLI."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from anomaly_kd.reporting import paper_values
from anomaly_kd.reporting.results import write_json_atomic
from anomaly_kd.reporting.sweep import MVTEC_ALL, build_tables, collect_jobs
from tests.reporting.sweep_helpers import cli


def make_job(sweep: Path, model: str, data: str, category: str, seed: int, metrics: dict | None = None,
             error: str | None = None, overrides: list[str] | None = None, results: bool = True) -> Path:
    """A job folder as a sweep leaves it: results.json (ok or failed) and .hydra/ records."""
    folder = sweep / model / data / category / f"seed{seed}_job{len(list(sweep.rglob('.hydra')))}"
    (folder / ".hydra").mkdir(parents=True)
    config = f"model:\n  name: {model}\ndata:\n  name: {data}\ncategory: {category}\nseed: {seed}\n"
    (folder / ".hydra" / "config.yaml").write_text(config)
    task = [f"model={model}", f"data={data}", f"category={category}", f"seed={seed}", *(overrides or [])]
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in task))
    if results:
        payload = {"status": "failed" if error else "ok", "model": model, "data": data, "category": category,
                   "seed": seed, "output_dir": str(folder)}
        if error:
            payload["error"] = error
        else:
            payload["metrics"] = metrics
        write_json_atomic(folder / "results.json", payload)
    return folder


def metrics(image: float, pixel: float | None = 0.9, aupro: float | None = 0.8) -> dict:
    return {"image_auroc": image, "pixel_auroc": pixel, "aupro": aupro, "dice_val_thr": 0.5,
            "dice_test_f1_thr": 0.6, "n_images": 8}


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def row_of(rows: list[dict], category: str, **match) -> dict:
    found = [r for r in rows if r["category"] == category and all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (category, match, rows)
    return found[0]


def test_mean_and_sample_std_over_seeds_and_mean_row_over_categories(tmp_path):
    values = {"bottle": [0.90, 0.94, 0.98], "cable": [0.80, 0.82, 0.78]}
    for category, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            make_job(tmp_path, "stfpm", "mvtec", category, seed, metrics(value))
    tables = build_tables(tmp_path)
    rows = read_csv(tables.paths["csv"])
    bottle = row_of(rows, "bottle")
    assert float(bottle["image_auroc_mean"]) == pytest.approx(0.94)
    assert float(bottle["image_auroc_std"]) == pytest.approx(statistics.stdev([0.90, 0.94, 0.98]))  # ddof=1
    assert bottle["n_seeds"] == "3" and bottle["n_failed"] == "0" and bottle["status"] == "ok"
    mean = row_of(rows, "mean")
    assert float(mean["image_auroc_mean"]) == pytest.approx((0.94 + 0.80) / 2)
    per_seed_means = [(a + b) / 2 for a, b in zip(values["bottle"], values["cable"])]
    assert float(mean["image_auroc_std"]) == pytest.approx(statistics.stdev(per_seed_means))
    # two categories, not all 15: no paper mean in the mean row, and no per-category paper values
    assert mean["image_auroc_paper"] == "" and bottle["image_auroc_paper"] == ""
    md = tables.paths["markdown"].read_text()
    assert "| stfpm | mvtec | bottle | 3 | 0.9400 ± 0.0400 |" in md
    assert "**mean**" in md and "2/2 categories" in md
    assert "sample standard deviation (n − 1 denominator)" in md
    assert "arXiv:2103.04257" in md  # the source of the STFPM paper values, in the footer
    jobs = read_csv(tables.paths["jobs"])
    assert len(jobs) == 6 and {j["status"] for j in jobs} == {"ok"}


def test_single_seed_has_no_std_and_none_metrics_are_skipped(tmp_path):
    make_job(tmp_path, "stfpm", "mnist", "1", 0, metrics(0.97, pixel=None, aupro=None))
    tables = build_tables(tmp_path)
    row = read_csv(tables.paths["csv"])[0]
    assert row["image_auroc_mean"] and row["image_auroc_std"] == "" and row["pixel_auroc_mean"] == ""
    md = tables.markdown
    assert "0.9700 ± n/a" in md and "paper" not in md.split("\n")[2]  # no paper column for MNIST
    assert "**mean**" not in md  # one category: no mean row


def test_failed_and_missing_jobs_are_listed_with_their_error_line(tmp_path):
    make_job(tmp_path, "stfpm", "mvtec", "bottle", 0, metrics(0.9))
    make_job(tmp_path, "stfpm", "mvtec", "bottle", 1, error="RuntimeError: CUDA out of memory")
    make_job(tmp_path, "stfpm", "mvtec", "nothere", 0, error="category 'nothere' not found in /data")
    make_job(tmp_path, "stfpm", "mvtec", "cable", 0, results=False)  # killed before writing results
    tables = build_tables(tmp_path)
    assert {(j.category, j.seed, j.status) for j in tables.failed} == {
        ("bottle", 1, "failed"), ("nothere", 0, "failed"), ("cable", 0, "missing")}
    rows = read_csv(tables.paths["csv"])
    bottle = row_of(rows, "bottle")
    assert bottle["n_seeds"] == "1" and bottle["n_failed"] == "1" and bottle["status"] == "1 failed"
    assert bottle["errors"] == "RuntimeError: CUDA out of memory"
    assert row_of(rows, "nothere")["status"] == "failed"
    assert row_of(rows, "mean")["status"] == "incomplete"
    md = tables.markdown
    assert "## Failed jobs (3 of 4)" in md
    assert "category 'nothere' not found in /data" in md and "no results.json" in md
    assert "| stfpm | mvtec | bottle | 1/2 |" in md


def test_paper_mean_is_shown_only_for_all_15_mvtec_categories(tmp_path):
    assert set(MVTEC_ALL) == set(__import__("anomaly_kd.data", fromlist=["x"]).MVTEC_CATEGORIES)
    for category in MVTEC_ALL:
        make_job(tmp_path, "reverse_distillation", "mvtec", category, 0, metrics(0.95))
    tables = build_tables(tmp_path)
    mean = row_of(read_csv(tables.paths["csv"]), "mean")
    expected = paper_values.PAPER_VALUES["reverse_distillation"]["values"]["mean"]
    assert float(mean["image_auroc_paper"]) == expected["image_auroc"] == 0.985
    assert float(mean["aupro_paper"]) == 0.939
    assert "CVPR 2022" in mean["paper_source"]
    assert "| 0.985 |" in tables.markdown and "15/15 categories" in tables.markdown


def test_paper_values_are_fractions_with_a_source():
    for model, entry in paper_values.PAPER_VALUES.items():
        assert entry["source"] and "arXiv" in entry["source"], model
        for category, values in entry["values"].items():
            assert category == "mean" or category in MVTEC_ALL
            for metric, value in values.items():
                assert metric in ("image_auroc", "pixel_auroc", "aupro") and 0.5 < value <= 1.0


def test_jobs_that_differ_in_other_overrides_are_separate_rows(tmp_path):
    for lr in ("0.1", "0.4"):
        for seed in (0, 1):
            make_job(tmp_path, "stfpm", "mvtec", "bottle", seed, metrics(float(lr) + seed / 100),
                     overrides=[f"model.lr={lr}", "trainer.max_epochs=1"])
    jobs = collect_jobs(tmp_path)
    assert {j.variant for j in jobs} == {"model.lr=0.1", "model.lr=0.4"}  # max_epochs is common
    tables = build_tables(tmp_path)
    rows = [r for r in read_csv(tables.paths["csv"]) if r["category"] == "bottle"]
    assert sorted(float(r["image_auroc_mean"]) for r in rows) == pytest.approx([0.105, 0.405])
    assert "| variant |" in tables.markdown


def test_report_cli_rebuilds_the_tables(tmp_path):
    make_job(tmp_path, "stfpm", "mvtec", "bottle", 0, metrics(0.9))
    make_job(tmp_path, "stfpm", "mvtec", "bottle", 1, error="ValueError: boom")
    proc = cli([str(tmp_path)], cwd=tmp_path, module="anomaly_kd.report")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "results.md").is_file() and (tmp_path / "results.csv").is_file()
    assert "ValueError: boom" in proc.stdout and "1 of 2 jobs failed" in proc.stderr
    strict = cli([str(tmp_path), "--strict", "--quiet"], cwd=tmp_path, module="anomaly_kd.report")
    assert strict.returncode == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = cli([str(empty)], cwd=tmp_path, module="anomaly_kd.report")
    assert nothing.returncode == 2 and nothing.stderr.strip().startswith("error: no job folders")


def test_results_json_of_a_single_run_folder_is_a_one_job_table(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write_json_atomic(folder / "results.json", {"status": "ok", "model": "stfpm", "data": "mvtec",
                                                "category": "bottle", "seed": 3, "metrics": metrics(0.8)})
    tables = build_tables(folder)
    assert len(tables.jobs) == 1 and tables.jobs[0].seed == 3
    assert json.loads((folder / "results.json").read_text())["status"] == "ok"
