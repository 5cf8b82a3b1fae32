"""The benchmark scripts run end to end at tiny sizes and print their tables (no timing is asserted:
the numbers depend on the machine)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.helpers import FAST, REPO, compose_config


def tiny_stfpm_run(tmp_path) -> tuple[dict, Path]:
    """A finished STFPM run (random weights, a few steps) on a generated 64 px MVTec-layout
    category of 10 training normals and 3 + 3 test images: its results and its output folder."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec
    from anomaly_kd.pipeline import run

    data = make_synthetic_mvtec(tmp_path / "data", category="widget", n_train=10, n_test_good=3, n_test_defect=3, size=64)
    overrides = ["model=stfpm", "data=mvtec", "category=widget", f"paths.data_dir={data}", "logger=none",
                 "model.pretrained=false", "data.cache=none", *FAST]  # fmt: skip
    results = run(compose_config(overrides, tmp_path / "run"))
    return results, Path(results["output_dir"])


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    return module


def table_rows(text: str, header: list[str]) -> dict[str, list[str]]:
    """The Markdown table whose header is ``header``: first cell -> the row's cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    start = lines.index("| " + " | ".join(header) + " |")
    rows = {}
    for line in lines[start + 2 :]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header), line
        rows[cells[0]] = cells
    return rows


def number(cell: str) -> float:
    return float(cell.split(" ")[0].rstrip("%x").replace(",", ""))


@pytest.mark.slow
def test_data_path_tiny(tmp_path, capsys):
    script = load_script("data_path")
    args = ["--data-dir", str(tmp_path / "data"), "--n-train", "5", "--n-test", "2", "--size", "48",
            "--image-size", "32", "--epochs", "1", "--batch-size", "2", "--same-process"]  # fmt: skip
    assert script.main(args) == 0
    out = capsys.readouterr().out
    rows = table_rows(out, script.COLUMNS)
    assert set(rows) == {"none", "ram"}
    for cells in rows.values():
        fit_s, images_per_s, steps = number(cells[1]), number(cells[2]), number(cells[4])
        assert fit_s > 0 and images_per_s > 0 and steps == 2  # 4 train images (1 validation), batch 2
        assert number(cells[5]) >= 0 and number(cells[6]) > 0  # data wait (0.000 s possible with ram), step compute
    assert rows["none"][8] == "-" and number(rows["ram"][8]) >= 0  # RAM cache build s (printed 0.00 when < 5 ms)
    assert rows["ram"][8].endswith("(5)") and rows["ram"][9] == "yes"  # train + validation, inside the fit
    assert "Goal with data.cache=ram" in out and "Machine: " in out and "Date: " in out
    assert "python benchmarks/data_path.py --data-dir" in out
    # the category is generated once and reused
    assert script.ensure_data(tmp_path / "data", 5, 2, 48)[1] is None


@pytest.mark.slow
def test_deploy_latency_tiny(tmp_path, capsys):
    script = load_script("deploy_latency")
    pytest.importorskip("onnxruntime")
    args = ["--image-size", "32", "--runs", "2", "--warmup", "0", "--predict-runs", "1", "--work", str(tmp_path)]
    assert script.main(args) == 0
    out = capsys.readouterr().out
    rows = table_rows(out, script.COLUMNS)
    assert [name.split(" ")[0] for name in rows] == ["PyTorch", "TorchScript", "ONNX", "predict()", "predict()"]
    for cells in rows.values():
        assert all(number(cells[i]) > 0 for i in (2, 3, 4, 6))  # median, p90, mean, img/s
    assert number(rows["ONNX Runtime (CPU EP)"][7]) < 1e-3  # same maps as the PyTorch model
    assert (tmp_path / "export" / "model.pt").is_file() and (tmp_path / "export" / "model.onnx").is_file()
    assert "Machine: " in out and "onnxruntime" in out and "Date: " in out


@pytest.mark.slow
def test_native_resolution_tiny(tmp_path, capsys):
    script = load_script("native_resolution")
    args = ["--size", "96", "--train", "4", "--test", "2", "--methods", "stfpm", "reverse_distillation",
            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "runs")]  # fmt: skip
    assert script.main(args) == 0
    out = capsys.readouterr().out
    header = ["method", "eval_resolution", "metric s", "test s", "peak RSS MiB", "job wall s", "status"]
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split("|")[1:3] for line in lines] == [
        [" stfpm ", " native "], [" reverse_distillation ", " native "], [" stfpm ", " model "]]
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header) and cells[-1] == "ok"
        assert number(cells[2]) >= 0 and number(cells[4]) > 0
    saved = (tmp_path / "runs" / "stfpm_native" / "results.json").read_text()
    assert '"eval_resolution": "native"' in saved


def test_quality_rows_cover_every_method_and_the_table_reads_results(tmp_path, capsys):
    import json

    script = load_script("quality")
    assert {row.method for row in script.ROWS.values()} >= {
        "stfpm", "stfpm_ensemble", "simple_student", "reverse_distillation"}
    assert script.main(["--list"]) == 0
    assert "model=reverse_distillation model.backbone=efficientnet_lite0" in capsys.readouterr().out
    # one finished row, one failed row: the table shows the results.json values and the failure
    done = tmp_path / "stfpm_lite0"
    done.mkdir()
    (done / "quality_row.json").write_text(json.dumps({"exit": 0, "load_before": 0.5, "load_after": 1.0,
                                                       "command": "python -m anomaly_kd.run x", "date": "d"}))
    (done / "results.json").write_text(json.dumps({
        "metrics": {"image_auroc": 0.71234, "pixel_auroc": 0.98, "aupro": 0.9, "image_ap": 0.8, "pixel_ap": 0.3,
                    "dice_val_thr": 0.25, "image_f1_test_thr": 0.85},
        "timing": {"train_seconds": 120.0, "test_images_per_second": 10.0},
        "config": {"trainer": {"max_epochs": 30}}}))  # fmt: skip
    failed = tmp_path / "rd4ad_lite0"
    failed.mkdir()
    (failed / "quality_row.json").write_text(json.dumps({"exit": 1}))
    table = script.build_table(tmp_path, "tire", tmp_path)
    assert ("| stfpm | efficientnet_lite0 | 0.712 | 0.980 | 0.900 | 0.800 | 0.300 | 0.250 | 0.850 | 2.0 min | "
            "10.0 | 30 | trainer.max_epochs=30 (recipe 100) | 0.5 / 1.0; threads - |") in table
    assert "| reverse_distillation | efficientnet_lite0 | failed (exit 1) |" in table
    assert "`python -m anomaly_kd.run x`" in table


@pytest.mark.slow
def test_quality_runs_a_row_end_to_end(tmp_path, capsys):
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    script = load_script("quality")
    data = make_synthetic_mvtec(tmp_path / "data", category="widget", n_train=5, size=64)
    args = ["--data-dir", str(data), "--category", "widget", "--rows", "stfpm_lite0", "--out", str(tmp_path / "q"),
            "--extra", "trainer.max_epochs=1", "data.image_size=64", "logger=none", "trainer=cpu"]  # fmt: skip
    assert script.main(args) == 0
    out = capsys.readouterr().out
    (line,) = [row for row in out.splitlines() if row.startswith("| stfpm | efficientnet_lite0 |")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert 0.0 <= number(cells[2]) <= 1.0 and cells[11] == "1"  # image AUROC; epochs from results.json
    assert (tmp_path / "q" / "table.md").read_text() in out


def test_channels_last_tiny(capsys):
    script = load_script("channels_last")
    assert script.main(["--size", "32", "--batch", "2", "--steps", "1", "--backbones", "resnet18"]) == 0
    (line,) = [row for row in capsys.readouterr().out.splitlines() if row.startswith("| resnet18 |")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert all(float(c) > 0 for c in (cells[1], cells[2], cells[4], cells[5]))
    assert float(cells[7]) < 1e-5  # the same loss in both layouts (float round-off)


@pytest.mark.slow
def test_throughput_tiny_measures_in_the_layout_a_fit_uses(tmp_path, capsys):
    """throughput.py times each model in the layout a fit on that device uses (auto: channels_last
    on the CPU; model.channels_last=false: NCHW), says which in its table, and writes its section
    with the date."""
    script = load_script("throughput")
    spec = {"name": "stfpm", "label": "stfpm", "device": "cpu", "precision": "32-true", "image_size": 32,
            "warmup": 0, "steps": 1, "threads": 1, "batch_size": 2, "test_batch_size": 2}  # fmt: skip
    nhwc = script.worker({**spec, "overrides": []})
    nchw = script.worker({**spec, "overrides": ["model.channels_last=false"]})
    assert "note" not in nhwc and "note" not in nchw, (nhwc, nchw)
    assert (nhwc["layout"], nchw["layout"]) == ("channels_last", "NCHW")
    assert nhwc["train_images_per_s"] > 0 and nhwc["test_images_per_s"] > 0
    readme = tmp_path / "README.md"
    args = ["--models", "stfpm", "--image-size", "32", "--batch-size", "2", "--warmup", "0", "--steps", "1"]
    assert script.main([*args, "--readme", str(readme)]) == 0
    head = ["model", "backbone", "layout", "params (M)", "trained (M)", "train img/s (batch 2)",
            "test img/s (batch 2)", "peak RSS (MiB)", "note"]  # fmt: skip
    assert table_rows(capsys.readouterr().out, head)["stfpm"][2] == "channels_last"
    text = readme.read_text()
    assert "## Throughput (CPU)" in text and "Date: " in text
    assert script.main([*args, "--overrides", "model.channels_last=false"]) == 0  # every model, e.g. NCHW
    assert table_rows(capsys.readouterr().out, head)["stfpm"][2] == "NCHW"
