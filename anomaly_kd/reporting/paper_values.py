"""Published MVTec AD numbers of the methods, for the "paper" columns of the sweep tables.

Only numbers that could be checked against a citable source are here; everything else is left
out on purpose (an empty cell, never a guess). Values are fractions in [0, 1] like our metrics
(papers print percent). Keys: our model name (``model.name``) -> ``{"source": ..., "values":
{category or "mean": {metric: value}}}``; ``"mean"`` is the paper's average over the 15
categories and is compared with our mean row.

Per-category values are not included: the per-category tables of the papers could not be checked
here, and numbers quoted second-hand (e.g. in reimplementations' READMEs, or anomalib's benchmark
tables, which are anomalib's own reimplementation results, not the papers') are not the papers'.
Add a category with its source when you have checked it against the paper.
"""

from __future__ import annotations

from typing import Any

PAPER_VALUES: dict[str, dict[str, Any]] = {
    "stfpm": {
        "source": (
            "STFPM: Wang, Han, Ding, Huang, Student-Teacher Feature Pyramid Matching for Anomaly "
            "Detection, BMVC 2021 (arXiv:2103.04257), MVTec AD mean over 15 categories, as listed "
            "for the paper on paperswithcode.com/paper/student-teacher-feature-pyramid-matching-for "
            "(Anomaly Detection on MVTec AD: detection AUROC 95.5, segmentation AUROC 97.0)"
        ),
        "values": {
            "mean": {"image_auroc": 0.955, "pixel_auroc": 0.970},
        },
    },
    "reverse_distillation": {
        "source": (
            "RD4AD: Deng, Li, Anomaly Detection via Reverse Distillation from One-Class Embedding, "
            "CVPR 2022 (arXiv:2201.10703), MVTec AD mean over 15 categories, as listed under "
            "'Results from the Paper' on paperswithcode.com/paper/"
            "anomaly-detection-via-reverse-distillation (detection AUROC 98.5, segmentation AUROC "
            "97.8, segmentation AUPRO 93.9)"
        ),
        "values": {
            "mean": {"image_auroc": 0.985, "pixel_auroc": 0.978, "aupro": 0.939},
        },
    },
}

#: the data set names whose categories the paper values refer to
PAPER_DATASETS = ("mvtec",)


def paper_value(model: str | None, data: str | None, category: str, metric: str) -> float | None:
    """The published value, or None (unknown, other data set, or not reported)."""
    if data not in PAPER_DATASETS or model not in PAPER_VALUES:
        return None
    return PAPER_VALUES[model]["values"].get(str(category), {}).get(metric)


def paper_source(model: str | None) -> str | None:
    entry = PAPER_VALUES.get(model or "")
    return entry["source"] if entry else None


__all__ = ["PAPER_DATASETS", "PAPER_VALUES", "paper_source", "paper_value"]
