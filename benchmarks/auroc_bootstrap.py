"""How much of a setting's image AUROC is its test set: a stratified, paired bootstrap over test images.

    python benchmarks/auroc_bootstrap.py RUN/scores.csv [...] [--against OTHER/scores.csv ...] [--resamples N]

The runs given (one setting's seeds: each a ``scores.csv`` with ``path``, ``label``, ``score``) must list the
same test images with the same labels. An image is known by its defect type (the ``defect`` column, else its
folder) and file stem, so runs that read another copy or layout of one test set (``data=mvtec3d``) compare.
Each resample draws as many normal images as the test set has, with replacement, from its normal images, and
as many defective ones from its defective images (both classes keep their counts), and scores every run on
that same draw; its statistic is the mean image AUROC over the runs (``anomaly_kd.metrics.image_auroc``).
Printed per setting: the mean on the test set as it is, the bootstrap standard deviation and the 2.5 / 97.5 %
percentiles. With ``--against``, the other setting's runs (the same test images) are scored on the same draws,
and the difference (runs minus against) is summarised the same way.

This measures the test set's sampling only: the runs given (their seeds, hence their maps) are held fixed. It
chooses nothing; it says how far a figure would move on another test set of the same size from the same source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from anomaly_kd.metrics import image_auroc  # noqa: E402
from normal_shares import read_rows  # noqa: E402  (benchmarks/, this script's folder)


def key(row: dict[str, str]) -> str:
    """An image's name within its test set: ``<defect type>/<file stem>``."""
    path = Path(row["path"])
    return f"{row.get('defect') or path.parent.name}/{path.stem}"


def read(scores_csv: Path) -> dict[str, tuple[int, float]]:
    """One run's test images: ``key`` -> (label, score)."""
    rows = read_rows(scores_csv)
    run = {key(r): (int(r["label"]), float(r["score"])) for r in rows}
    if len(run) != len(rows):
        raise ValueError(f"{scores_csv} names an image twice (defect type and file stem): pass one run's scores.csv")
    return run


def load(paths: list[Path]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels (in the first run's sorted image order) and each run's scores in that order."""
    runs = [read(p) for p in paths]
    order = sorted(runs[0])
    labels = np.array([runs[0][k][0] for k in order])
    for path, run in zip(paths, runs):
        if sorted(run) != order or any(run[k][0] != lab for k, lab in zip(order, labels)):
            raise ValueError(f"{path} does not list the same test images and labels as {paths[0]}: "
                             "compare runs of one test set only")
    if labels.min() == labels.max():
        raise ValueError(f"{paths[0]} has only one class (label {labels[0]}): image AUROC needs both")
    return labels, [np.array([run[k][1] for k in order]) for run in runs]


def draws(labels: np.ndarray, resamples: int, seed: int):
    """Index arrays: normals drawn from the normals, defective from the defective, with replacement."""
    rng = np.random.default_rng(seed)
    normal, defective = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    for _ in range(resamples):
        yield np.concatenate([rng.choice(normal, normal.size), rng.choice(defective, defective.size)])


def mean_auroc(labels: np.ndarray, runs: list[np.ndarray], idx: np.ndarray | None = None) -> float:
    if idx is None:
        idx = np.arange(labels.size)
    return float(np.mean([image_auroc(s[idx], labels[idx]) for s in runs]))


def bootstrap(labels: np.ndarray, groups: list[list[np.ndarray]], resamples: int = 10_000, seed: int = 0) -> np.ndarray:
    """(resamples, groups): each group's mean image AUROC on each draw, every group on the same draws."""
    return np.array([[mean_auroc(labels, runs, idx) for runs in groups] for idx in draws(labels, resamples, seed)])


def summary(point: float, values: np.ndarray) -> dict[str, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {"test": point, "sd": float(np.std(values, ddof=1)), "lo": float(lo), "hi": float(hi)}


def line(name: str, s: dict[str, float]) -> str:
    return f"{name}: {s['test']:.3f}, bootstrap sd {s['sd']:.3f}, 95% [{s['lo']:.3f}, {s['hi']:.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="one setting's scores.csv files (its seeds)")
    parser.add_argument("--against", nargs="+", type=Path, default=[], help="another setting's scores.csv files")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.resamples < 2:
        parser.error(f"--resamples {args.resamples}: give at least 2 (a standard deviation needs two)")
    try:
        labels, runs = load(args.runs + args.against)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    groups = [runs[: len(args.runs)]] + ([runs[len(args.runs):]] if args.against else [])
    points = [mean_auroc(labels, g) for g in groups]
    values = bootstrap(labels, groups, args.resamples, args.seed)
    n_normal, n_defective = int((labels == 0).sum()), int((labels == 1).sum())
    print(f"{n_normal} normal and {n_defective} defective test images; {args.resamples} resamples, seed {args.seed}; "
          "mean image AUROC over the runs")
    print(line(f"runs (n={len(groups[0])})", summary(points[0], values[:, 0])))
    if args.against:
        print(line(f"against (n={len(groups[1])})", summary(points[1], values[:, 1])))
        print(line("difference", summary(points[0] - points[1], values[:, 0] - values[:, 1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
