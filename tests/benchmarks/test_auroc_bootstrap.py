"""benchmarks/auroc_bootstrap.py: each resample against sklearn on the same draw, and cases exact by construction."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.helpers import REPO, write_scores

sys.path.insert(0, str(REPO / "benchmarks"))

import auroc_bootstrap  # noqa: E402


def random_runs(tmp_path: Path, n_runs: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for r in range(n_runs):
        # rows in another order per run: runs are matched by path, not by line
        rows = [(f"test/good/{i:03d}.png", 0, float(rng.normal(0, 1))) for i in range(25)]
        rows += [(f"test/hole/{i:03d}.png", 1, float(rng.normal(1, 1))) for i in range(87)]
        rng.shuffle(rows)
        paths.append(write_scores(tmp_path / f"run{seed}_{r}", rows))
    return paths


def test_each_resample_is_the_mean_sklearn_auroc_on_its_draw(tmp_path):
    labels, runs = auroc_bootstrap.load(random_runs(tmp_path, 3, seed=0))
    values = auroc_bootstrap.bootstrap(labels, [runs], resamples=30, seed=7)
    for b, idx in enumerate(auroc_bootstrap.draws(labels, 30, 7)):
        # both classes keep their counts, drawn from their own class only
        assert (labels[idx[:25]] == 0).all() and (labels[idx[25:]] == 1).all() and idx.size == 112
        expected = np.mean([roc_auc_score(labels[idx], s[idx]) for s in runs])
        assert values[b, 0] == pytest.approx(expected, abs=1e-12)
    full = np.mean([roc_auc_score(labels, s) for s in runs])
    assert auroc_bootstrap.mean_auroc(labels, runs) == pytest.approx(full, abs=1e-12)


def test_separated_scores_give_one_on_every_draw(tmp_path):
    rows = [(f"good/{i}.png", 0, float(i)) for i in range(5)] + [(f"bad/{i}.png", 1, 10.0 + i) for i in range(7)]
    labels, runs = auroc_bootstrap.load([write_scores(tmp_path / "a", rows)])
    values = auroc_bootstrap.bootstrap(labels, [runs], resamples=200, seed=0)
    assert (values == 1.0).all()
    assert auroc_bootstrap.summary(1.0, values[:, 0]) == {"test": 1.0, "sd": 0.0, "lo": 1.0, "hi": 1.0}


def test_a_setting_against_itself_differs_by_exactly_zero_on_every_draw(tmp_path, capsys):
    paths = random_runs(tmp_path, 2, seed=1)
    labels, runs = auroc_bootstrap.load(paths)
    values = auroc_bootstrap.bootstrap(labels, [runs, runs], resamples=100, seed=3)
    assert (values[:, 0] == values[:, 1]).all()
    assert auroc_bootstrap.main([*map(str, paths), "--against", *map(str, paths), "--resamples", "50"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "25 normal and 87 defective test images; 50 resamples, seed 0; mean image AUROC over the runs"
    assert out[3] == "difference: 0.000, bootstrap sd 0.000, 95% [0.000, 0.000]"


def test_runs_of_another_test_set_or_not_a_scores_csv_end_in_one_line(tmp_path, capsys):
    a = write_scores(tmp_path / "a", [("g/1.png", 0, 0.1), ("b/1.png", 1, 0.9)])
    b = write_scores(tmp_path / "b", [("g/1.png", 0, 0.1), ("b/2.png", 1, 0.9)])
    c = write_scores(tmp_path / "c", [("g/1.png", 1, 0.1), ("b/1.png", 1, 0.9)])
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert auroc_bootstrap.main([str(a), "--against", str(b)]) == 2
    assert auroc_bootstrap.main([str(a), str(c)]) == 2
    assert auroc_bootstrap.main([str(c)]) == 2
    assert auroc_bootstrap.main([str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    same = f"as {a}: compare runs of one test set only"
    assert err == [f"error: {b} does not list the same test images and labels {same}",
                   f"error: {c} does not list the same test images and labels {same}",
                   f"error: {c} has only one class (label 1): image AUROC needs both",
                   f"error: {tmp_path / 'other.csv'} has no path, label and score columns: pass a run's scores.csv"]


def test_images_are_matched_by_defect_type_and_stem_across_layouts(tmp_path):
    # the MVTec AD layout (folder = defect type) and MVTec 3D-AD's (test/<defect>/rgb, defect column) of one test set
    flat = tmp_path / "flat" / "scores.csv"
    flat.parent.mkdir()
    flat.write_text("path,label,score\n/d/test/good/000.png,0,0.2\n"
                    "/d/test/cut/000.png,1,0.1\n/d/test/hole/000.png,1,0.9\n")
    nested = tmp_path / "nested" / "scores.csv"
    nested.parent.mkdir()
    nested.write_text("path,defect,label,score\n/x/test/hole/rgb/000.png,hole,1,0.5\n"
                      "/x/test/good/rgb/000.png,good,0,0.3\n/x/test/cut/rgb/000.png,cut,1,0.4\n")
    labels, (a, b) = auroc_bootstrap.load([flat, nested])
    assert labels.tolist() == [1, 0, 1]  # cut/000, good/000, hole/000
    assert a.tolist() == [0.1, 0.2, 0.9] and b.tolist() == [0.4, 0.3, 0.5]


def test_an_image_named_twice_ends_in_one_line(tmp_path, capsys):
    path = tmp_path / "run" / "scores.csv"
    path.parent.mkdir()
    path.write_text("path,label,score\n/a/test/good/000.png,0,0.2\n"
                    "/b/test/good/000.png,0,0.3\n/a/test/cut/000.png,1,0.9\n")
    assert auroc_bootstrap.main([str(path)]) == 2
    twice = "names an image twice (defect type and file stem): pass one run's scores.csv"
    assert capsys.readouterr().err.strip() == f"error: {path} {twice}"


def test_fewer_than_two_resamples_is_refused_before_reading(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        auroc_bootstrap.main([str(tmp_path / "missing.csv"), "--resamples", "1"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: --resamples 1: give at least 2 (a standard deviation needs two)")
