"""How high a trained run's anomaly maps are on defects and on normal surface (test labels; a
description, not a choice).

    python benchmarks/map_regions.py benchmarks/.quality/<row> [<row folder> ...]

For each run folder (its checkpoints and ``results.json``, as ``benchmarks/quality.py`` writes
them) this scores the run's own test set with the checkpoint the run tested (the maps of its test
step, at the model's resolution, batched as the run batched them: ``score_rules.load_tested_run``
and ``score_set``) and reports from the test masks and labels:

- the mean map value over defect pixels, over the other pixels of defective images and over the
  pixels of normal images, and the ratio of the first to the last;
- the median over normal images of each image's map maximum, and the median over defective images
  of each image's maximum inside its defect mask, and their ratio.

Two checkpoints of one method whose maps all shrink alike keep these ratios; a checkpoint that
learns to match the teacher on defects as well lowers the defect-to-normal ratios. Test labels
describe the maps here and nothing is chosen from them. Writes ``map_regions.json`` into each run
folder and prints one Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from anomaly_kd.errors import UserError, exit_on_user_error  # noqa: E402
from score_rules import load_tested_run, score_set  # noqa: E402


def region_stats(maps: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Region means and per-image maxima of ``maps`` ``[N, 1, H, W]`` (``masks`` alike, 1 =
    defect; ``labels`` ``[N]``, 1 = defective image). Every defective image needs a non-empty mask."""
    maps, masks = maps.double().flatten(1), masks.flatten(1) > 0.5
    defective = labels.bool()
    if not defective.any() or defective.all():
        raise UserError("map_regions needs normal and defective test images.")
    if not masks[defective].any(dim=1).all():
        raise UserError("map_regions needs a defect mask with at least one pixel on every defective image.")
    bad, bad_masks, good = maps[defective], masks[defective], maps[~defective]
    defect, around, normal = bad[bad_masks].mean(), bad[~bad_masks].mean(), good.mean()
    normal_max = good.amax(dim=1).quantile(0.5)  # the middle two averaged, as statistics.median
    defect_max = bad.masked_fill(~bad_masks, -torch.inf).amax(dim=1).quantile(0.5)
    return {
        "mean_defect_pixels": float(defect), "mean_other_pixels_of_defective_images": float(around),
        "mean_normal_images": float(normal), "defect_to_normal_mean": float(defect / normal),
        "median_normal_image_max": float(normal_max), "median_max_inside_defect": float(defect_max),
        "defect_to_normal_max": float(defect_max / normal_max),
    }  # fmt: skip


def evaluate_run(run: Path) -> dict:
    results, datamodule, model = load_tested_run(run)
    test = score_set(model, datamodule.test_dataloader())
    return {
        "run": run.name, "epochs_trained": results.get("epochs_trained"), "n_images": len(test["labels"]),
        **region_stats(test["maps"], test["labels"], test["masks"]),
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} {platform.node()}",
        "torch": torch.__version__,
    }  # fmt: skip


COLUMNS = (
    ("mean_defect_pixels", "mean map, defect pixels"),
    ("mean_other_pixels_of_defective_images", "mean map, rest of defective images"),
    ("mean_normal_images", "mean map, normal images"),
    ("defect_to_normal_mean", "defect / normal (means)"),
    ("median_normal_image_max", "median max, normal images"),
    ("median_max_inside_defect", "median max inside defect"),
    ("defect_to_normal_max", "defect / normal (maxima)"),
)


def table(records: list[dict]) -> str:
    lines = ["| run | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for r in records:
        lines.append(f"| {r['run']} | " + " | ".join(f"{r[key]:.4g}" for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (checkpoints/ and results.json)")
    args = parser.parse_args(argv)
    records = []
    for run in args.runs:
        record = evaluate_run(run)
        (run / "map_regions.json").write_text(json.dumps(record, indent=1))
        records.append(record)
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_on_user_error(main))
