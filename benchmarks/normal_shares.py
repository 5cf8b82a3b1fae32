"""Which normal test images cost a run its image AUROC (test labels; a description that chooses nothing).

    python benchmarks/normal_shares.py benchmarks/quality_runs/<row>/scores.csv [...]

For each ``scores.csv`` (a run's per-image test scores: ``path``, ``label``, ``score``) it prints one line:
the run folder's name, the sum over normal images of the share of defective images each normal scores
at or above (ties count), and the five largest shares with the normals' file stems. The sum is
``n_normal x (1 - image AUROC)`` when no scores tie (a tie costs the AUROC half of what it counts here).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def read_rows(scores_csv: Path) -> list[dict[str, str]]:
    """A run's ``scores.csv`` rows; a missing file, one without ``path``, ``label``, ``score``, a score that is not a
    number or a label other than 0 / 1 is a ValueError naming the file (and line)."""
    if not scores_csv.is_file():
        raise ValueError(f"{scores_csv} not found: pass a run's scores.csv (benchmarks/quality_runs/<row>/scores.csv)")
    with open(scores_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"path", "label", "score"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{scores_csv} has no path, label and score columns: pass a run's scores.csv")
        rows = list(reader)
    for line_no, row in enumerate(rows, start=2):
        try:
            float(row["score"])
        except (TypeError, ValueError):
            raise ValueError(f"{scores_csv} line {line_no}: score {row['score']!r} is not a number: "
                             "pass a run's scores.csv") from None
        if row["label"] not in ("0", "1"):
            raise ValueError(f"{scores_csv} line {line_no}: label {row['label']!r} is not 0 or 1: "
                             "pass a run's scores.csv")
    return rows


def shares(scores_csv: Path) -> list[tuple[float, str]]:
    """(share of defective images the normal scores at or above, the normal's file stem), largest first."""
    rows = read_rows(scores_csv)
    defective = [float(r["score"]) for r in rows if r["label"] == "1"]
    if not defective:
        raise ValueError(f"{scores_csv} has no defective image (label 1)")
    normal = [(float(r["score"]), Path(r["path"]).stem) for r in rows if r["label"] == "0"]
    return sorted(((sum(s >= d for d in defective) / len(defective), stem) for s, stem in normal), reverse=True)


def line(scores_csv: Path, top: int = 5) -> str:
    per_normal = shares(scores_csv)
    total = round(sum(share for share, _ in per_normal), 2)
    return f"{scores_csv.parent.name} {total} {[(stem, round(share, 2)) for share, stem in per_normal[:top]]}"


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    for path in paths:
        try:
            print(line(Path(path)))
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
