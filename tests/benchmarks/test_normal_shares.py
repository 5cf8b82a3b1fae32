"""benchmarks/normal_shares.py: per-normal shares of the defective images outscored, hand-computed and against sklearn."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.helpers import REPO, write_scores

sys.path.insert(0, str(REPO / "benchmarks"))

import normal_shares  # noqa: E402


def test_hand_computed_shares_ties_count(tmp_path):
    # defective scores 1, 2, 3, 4; normal 'a' = 2.5 reaches 1 and 2 (2/4), 'b' = 4 ties with 4 (4/4), 'c' = 0.5 none
    rows = [(f"test/cut/{i}.png", 1, float(i)) for i in (1, 2, 3, 4)]
    rows += [("test/good/a.png", 0, 2.5), ("test/good/b.png", 0, 4.0), ("test/good/c.png", 0, 0.5)]
    path = write_scores(tmp_path / "run_x", rows)
    assert normal_shares.shares(path) == [(1.0, "b"), (0.5, "a"), (0.0, "c")]
    assert normal_shares.line(path) == "run_x 1.5 [('b', 1.0), ('a', 0.5), ('c', 0.0)]"


def test_sum_is_n_normal_times_one_minus_image_auroc_without_ties(tmp_path):
    rng = np.random.default_rng(0)
    normal, defective = rng.normal(0, 1, 25), rng.normal(1, 1, 87)
    rows = [(f"test/good/{i:03d}.png", 0, float(s)) for i, s in enumerate(normal)]
    rows += [(f"test/hole/{i:03d}.png", 1, float(s)) for i, s in enumerate(defective)]
    path = write_scores(tmp_path / "run", rows)
    auroc = roc_auc_score([0] * 25 + [1] * 87, np.concatenate([normal, defective]))
    assert sum(share for share, _ in normal_shares.shares(path)) == pytest.approx(25 * (1 - auroc), abs=1e-12)


def test_no_defective_image_is_named(tmp_path):
    path = write_scores(tmp_path / "run", [("test/good/a.png", 0, 1.0)])
    with pytest.raises(ValueError, match="has no defective image"):
        normal_shares.shares(path)


def test_a_path_that_is_not_a_scores_csv_ends_in_one_line(tmp_path, capsys):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert normal_shares.main([str(tmp_path / "missing.csv")]) == 2
    assert normal_shares.main([str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'missing.csv'} not found: pass a run's scores.csv (benchmarks/quality_runs/<row>/scores.csv)",
                   f"error: {tmp_path / 'other.csv'} has no path, label and score columns: pass a run's scores.csv"]


def test_a_score_or_label_that_cannot_be_read_ends_in_one_line(tmp_path, capsys):
    bad_score = write_scores(tmp_path / "a", [("test/good/a.png", 0, 1.0), ("test/cut/b.png", 1, "n/a")])
    bad_label = write_scores(tmp_path / "b", [("test/good/a.png", "good", 1.0), ("test/cut/b.png", 1, 2.0)])
    assert normal_shares.main([str(bad_score)]) == 2
    assert normal_shares.main([str(bad_label)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad_score} line 3: score 'n/a' is not a number: pass a run's scores.csv",
                   f"error: {bad_label} line 2: label 'good' is not 0 or 1: pass a run's scores.csv"]
