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
from anomaly_kd.reporting.sweep_jobs import collect_jobs
from anomaly_kd.reporting.sweep_rows import MVTEC_ALL
from anomaly_kd.reporting.sweep_tables import build_tables
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
    # two categories, not all 15: no published mean in the mean row; the thesis's per-category
    # STFPM image AUROC beside ours (its Dice beside our test-F1-threshold Dice), the STFPM paper's
    # (a 15-category mean only) empty
    assert mean["image_auroc_paper_stfpm_paper"] == "" and bottle["image_auroc_paper_stfpm_paper"] == ""
    assert float(bottle["image_auroc_paper_thesis"]) == 0.997 and float(bottle["dice_test_f1_thr_paper_thesis"]) == 0.661
    assert mean["image_auroc_paper_thesis"] == "" and "224 px" in bottle["paper_sources"]
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
    assert float(mean["image_auroc_paper_rd4ad_paper"]) == 0.985
    assert float(mean["image_auroc_paper_rd4ad_paddle"]) == 0.989
    # the authors' per-image PRO only beside our rd4ad_pro, never beside the MVTec AUPRO
    assert float(mean["rd4ad_pro_paper_rd4ad_paper"]) == 0.939 and float(mean["rd4ad_pro_paper_rd4ad_paddle"]) == 0.944
    assert not [c for c in mean if c.startswith("aupro_paper")]
    assert "CVPR 2022" in mean["paper_sources"] and "per-image PRO" in mean["paper_sources"]
    assert "| 0.985 |" in tables.markdown and "15/15 categories" in tables.markdown


def test_paper_values_are_fractions_with_a_source_and_a_like_for_like_metric():
    values = paper_values.all_paper_values()
    assert {v.model for v in values} == {"stfpm", "stfpm_ensemble", "simple_student", "reverse_distillation"}
    for v in values:
        assert v.source in paper_values.SOURCES and v.category in (*MVTEC_ALL, "mean"), v
        # never the MVTec AUPRO, never the Dice at a threshold from validation normals
        assert v.metric in ("image_auroc", "pixel_auroc", "rd4ad_pro", "dice_test_f1_thr"), v
        assert 0.0 < v.value <= 1.0, v
    for source in paper_values.SOURCES.values():
        assert source.citation and source.protocol
    # every cell of the package-data files is read (14 thesis categories x 6 columns, 9 x 3 + a
    # mean x 3 of the re-implementation), and the RD4AD paper mean row of the file is the one here
    assert sum(v.source == "thesis" for v in values) == 14 * 6
    assert sum(v.source == "rd4ad_paddle" for v in values) == 10 * 3
    paper_row = next(r for r in paper_values.read_paper_file("rd4ad_paddle_reproduction.csv")
                     if r["category"] == "mean_15_paper")
    assert [float(paper_row[c]) for c in ("image_auroc", "pixel_auroc", "pixel_aupro_authors_per_image")] == [
        paper_values.paper_value("reverse_distillation", "mvtec", "mean", m, "rd4ad_paper")
        for m in ("image_auroc", "pixel_auroc", "rd4ad_pro")]


def test_published_values_sit_next_to_the_same_metric_in_the_markdown(tmp_path):
    make_job(tmp_path, "reverse_distillation", "mvtec", "grid", 0, {**metrics(0.95), "rd4ad_pro": 0.9})
    make_job(tmp_path, "simple_student", "mvtec", "capsule", 0, metrics(0.7))
    md = build_tables(tmp_path).markdown
    head = [c.strip() for c in md.split("\n")[2].strip("|").split("|")]
    at = head.index
    assert head[at("AUPRO") + 1] != "RD4AD paper"  # no published column after the MVTec AUPRO
    assert head[at("PRO (RD4AD authors' per-image)") + 1 : at("PRO (RD4AD authors' per-image)") + 3] == [
        "RD4AD paper", "RD4AD Paddle re-impl."]
    assert head[at("Dice (threshold from test labels)") + 1] == "thesis"
    assert head[at("Dice (val-normal threshold)") + 1] != "thesis"
    grid = next(line for line in md.splitlines() if "| grid |" in line)
    cells = [c.strip() for c in grid.strip("|").split("|")]
    assert cells[at("PRO (RD4AD authors' per-image)")] == "0.9000 ± n/a"
    assert cells[at("PRO (RD4AD authors' per-image)") + 2] == "0.976"  # the re-implementation's grid
    capsule = [c.strip() for c in next(line for line in md.splitlines() if "| capsule |" in line).strip("|").split("|")]
    assert capsule[at("Dice (threshold from test labels)") + 1] == "0.014"  # thesis 0.0137
    assert "protocol:" in md and "never beside the MVTec AUPRO" in md


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


def test_wandb_sweep_summary_carries_published_values_and_their_sources(tmp_path, monkeypatch):
    import sys
    import types

    from omegaconf import OmegaConf

    from anomaly_kd.reporting.wandb_sweep import log_sweep_summary

    calls = {}

    class Run:
        id = "fake"
        summary = {}

        def log(self, payload):
            calls["log"] = payload

        def finish(self, exit_code=0):
            calls["exit_code"] = exit_code

    def init(**kwargs):
        calls["init"] = kwargs
        return Run()

    class Table:
        def __init__(self, columns, data):
            self.columns, self.data = columns, data

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init, Table=Table))
    for category in MVTEC_ALL:
        make_job(tmp_path, "reverse_distillation", "mvtec", category, 0, {**metrics(0.95), "rd4ad_pro": 0.9})
    tables = build_tables(tmp_path, write=False)
    log_sweep_summary(OmegaConf.create({"logger": {"wandb": {"offline": True}}}), tables)
    table = calls["log"]["results"]
    grid = dict(zip(table.columns, next(r for r in table.data if r[table.columns.index("category")] == "grid")))
    assert grid["rd4ad_pro_mean"] == 0.9 and grid["rd4ad_pro_paper_rd4ad_paddle"] == 0.976
    assert "aupro_paper_rd4ad_paper" not in table.columns
    summary = Run.summary
    assert summary["reverse_distillation/mvtec/mean/rd4ad_pro_paper_rd4ad_paper"] == 0.939
    assert summary["reverse_distillation/mvtec/mean/image_auroc_paper_rd4ad_paddle"] == 0.989
    sources = calls["init"]["config"]["paper_sources"]
    assert set(sources) == {"rd4ad_paper", "rd4ad_paddle"} and "per-image PRO" in sources["rd4ad_paper"]


def test_paper_columns_come_in_one_order_whatever_the_hash_seed():
    """The sweep callback and `anomaly_kd.report` run in different processes (other hash seeds):
    the paper columns must not follow a set's order. By source, then by metric name."""
    from anomaly_kd.reporting.paper_values import SOURCES, paper_columns

    columns = paper_columns(["stfpm", "stfpm_ensemble", "simple_student", "reverse_distillation"])
    assert len(columns) == len(set(columns)) >= 2
    assert columns == sorted(columns, key=lambda ms: (list(SOURCES).index(ms[1]), ms[0]))
