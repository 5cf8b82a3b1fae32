"""The benchmark scripts run end to end at tiny sizes and print their tables (no timing is asserted:
the numbers depend on the machine)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import REPO


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
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
