"""benchmarks/map_regions.py: region means and maxima of a run's test maps, checked on a
hand-computed case and against the run's own test scores."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
import torch

from anomaly_kd.errors import UserError
from tests.benchmarks.test_benchmark_scripts import load_script, tiny_stfpm_run


def test_region_stats_by_hand():
    script = load_script("map_regions")
    maps = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[10.0, 0.0], [2.0, 6.0]]], [[[5.0, 1.0], [1.0, 1.0]]]])
    masks = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    labels = torch.tensor([0, 1, 0])
    stats = script.region_stats(maps, labels, masks)
    assert stats["mean_defect_pixels"] == 8.0  # (10 + 6) / 2
    assert stats["mean_other_pixels_of_defective_images"] == 1.0  # (0 + 2) / 2
    assert stats["mean_normal_images"] == 2.25  # (1 + 2 + 3 + 4 + 5 + 1 + 1 + 1) / 8
    assert stats["defect_to_normal_mean"] == 8.0 / 2.25
    assert stats["median_normal_image_max"] == 4.5  # median of 4 and 5
    assert stats["median_max_inside_defect"] == 10.0
    assert stats["defect_to_normal_max"] == 10.0 / 4.5


def test_region_stats_needs_both_kinds_of_image_and_a_mask_on_each_defect(tmp_path):
    script = load_script("map_regions")
    maps, masks = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    with pytest.raises(UserError, match="needs normal and defective test images"):
        script.region_stats(maps, torch.tensor([0, 0]), masks)
    with pytest.raises(UserError, match="a defect mask with at least one pixel on every defective image"):
        script.region_stats(maps, torch.tensor([0, 1]), masks)
    with pytest.raises(UserError, match="has no results.json"):
        script.main([str(tmp_path)])


@pytest.mark.slow
def test_on_a_trained_run_the_normal_maxima_are_the_runs_own_scores(tmp_path, capsys):
    """STFPM's image score is its map's maximum, so the median normal-image maximum recomputed from
    the tested checkpoint is the median of the run's own normal test scores (scores.csv)."""
    results, run_dir = tiny_stfpm_run(tmp_path)
    script = load_script("map_regions")
    assert script.main([str(run_dir)]) == 0
    record = json.loads((run_dir / "map_regions.json").read_text())
    rows = list(csv.DictReader(open(run_dir / "scores.csv")))
    normal_scores = [float(r["score"]) for r in rows if r["label"] == "0"]
    assert record["n_images"] == len(rows) == 6
    assert record["median_normal_image_max"] == pytest.approx(statistics.median(normal_scores), rel=1e-6)
    assert f"| {run_dir.name} | " in capsys.readouterr().out
