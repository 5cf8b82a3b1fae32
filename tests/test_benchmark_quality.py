"""benchmarks/quality.py: row commands and table lines from hand-written row files (no training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402


def test_seed_rows_differ_from_their_recipe_row_by_the_seed_alone():
    base = quality.command("simple_student_lite0_recipe", Path("/d"), "tire", Path("/o"))
    seeded = quality.command("simple_student_lite0_recipe_seed1", Path("/d"), "tire", Path("/o"))
    assert [a for a in seeded if a not in base] == ["seed=1", "hydra.run.dir=/o/simple_student_lite0_recipe_seed1"]
    assert [a for a in base if a not in seeded] == ["hydra.run.dir=/o/simple_student_lite0_recipe"]
    assert not any(a.startswith("seed=") for a in base)  # the config's own seed (0)
    assert quality.ROWS["simple_student_lite0_recipe_seed2"].label == "simple_student (seed 2)"
    assert quality.ROWS["simple_student_lite0_recipe"].label == "simple_student"


def test_row_line_reads_the_row_files(tmp_path):
    folder = tmp_path / "simple_student_lite0_recipe_seed1"
    folder.mkdir()
    (folder / "quality_row.json").write_text(json.dumps({"load_before": 1.04, "load_after": 2.0, "threads": "1"}))
    metrics = {"image_auroc": 0.8, "pixel_auroc": 0.98125, "aupro": 0.93, "image_ap": 0.9, "pixel_ap": 0.1,
               "dice_val_thr": 0.12, "image_f1_test_thr": 0.89}  # fmt: skip
    results = {"metrics": metrics, "timing": {"train_seconds": 930.0, "test_images_per_second": 14.04},
               "config": {"trainer": {"max_epochs": 100}}}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))
    line = quality.row_line("simple_student_lite0_recipe_seed1", tmp_path)
    assert line == ("| simple_student (seed 1) | efficientnet_lite0 | 0.800 | 0.981 | 0.930 | 0.900 | 0.100 | "
                    "0.120 | 0.890 | 15.5 min | 14.0 | 100 | paper recipe | 1.0 / 2.0; threads 1 |")  # fmt: skip
    assert line.count("|") == quality.HEADER.splitlines()[0].count("|")


@pytest.mark.parametrize(("method", "epochs", "seeds", "size"),
                         [("simple_student", 200, 5, None), ("simple_student", 400, 5, None),
                          ("stfpm_ensemble", 200, 4, None), ("simple_student", 200, 5, 256)])
def test_longer_rows_differ_from_the_recipe_by_epochs_size_and_seed_alone(method, epochs, seeds, size):
    recipe = f"{method}_lite0_recipe"
    base = quality.command(recipe, Path("/d"), "tire", Path("/o"))
    px = "" if size is None else f"_px{size}"
    for s in range(seeds):
        name = f"{method}_lite0_e{epochs}{px}_seed{s}"
        longer = quality.command(name, Path("/d"), "tire", Path("/o"))
        sized = [] if size is None else [f"data.image_size={size}"]
        assert [a for a in longer if a not in base] == [f"trainer.max_epochs={epochs}", *sized, f"seed={s}",
                                                         f"hydra.run.dir=/o/{name}"]  # fmt: skip
        assert [a for a in base if a not in longer] == [f"hydra.run.dir=/o/{recipe}"]
        variant = f"{epochs} epochs" + ("" if size is None else f"; {size} px")
        assert quality.ROWS[name].label == f"{method} ({variant}; seed {s})"
    assert f"{method}_lite0_e{epochs}{px}_seed{seeds}" not in quality.ROWS


def test_mvtec3d_rows_differ_from_the_200_epoch_rows_by_the_data_set_split_alone():
    for s in range(5):
        base = quality.command(f"simple_student_lite0_e200_seed{s}", Path("/d/mvtec3d_tire256"), "tire", Path("/o"))
        name = f"simple_student_lite0_e200_mvtec3d_seed{s}"
        own = quality.command(name, Path("/d/mvtec3d_tire256"), "tire", Path("/o"))
        assert [a for a in own if a not in base] == [
            "data=mvtec3d", "paths.data_dir=/o/_layouts/mvtec3d_tire256_mvtec3d", f"hydra.run.dir=/o/{name}"]
        assert [a for a in base if a not in own] == [
            "data=mvtec", "paths.data_dir=/d/mvtec3d_tire256", f"hydra.run.dir=/o/simple_student_lite0_e200_seed{s}"]
        assert quality.ROWS[name].label == f"simple_student (200 epochs; the data set's train/validation split; seed {s})"
    assert "simple_student_lite0_e200_mvtec3d_seed5" not in quality.ROWS
