"""Published MVTec AD numbers, for the "paper" columns of the sweep tables and the W&B summary.

Every value names its *source* (who published it, and how it was computed) and the column of ours
that was computed the same way; a value is only ever shown beside that column:

- ``image_auroc`` / ``pixel_auroc``: image and pooled pixel ROC AUC (same definition everywhere);
- ``rd4ad_pro``: the RD4AD authors' per-image PRO (``rd4ad_pro=true``), never beside our ``aupro``
  (the MVTec AD procedure): the RD4AD paper and its re-implementation computed theirs with the
  authors' ``compute_pro``;
- ``dice_test_f1_thr``: Dice at the threshold maximising image F1 on the test labels (the thesis's
  protocol), never beside the Dice at a threshold from validation normals.

Values are fractions in [0, 1] like our metrics (papers print percent). The 15-category means live
here; the per-category tables are package data (``papers/*.csv``, transcribed from the documents
the project was specified from, see ``papers/README.md``), read once on first use. Numbers quoted
second-hand (e.g. anomalib's benchmark tables, its own re-implementation) are not included.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class PaperSource:
    key: str  # in column names: <metric>_paper_<key>
    label: str  # in table headers
    citation: str
    protocol: str


@dataclass(frozen=True)
class PaperValue:
    model: str  # our model name (model.name)
    category: str  # MVTec AD category, or "mean" (the published mean over the 15 categories)
    metric: str  # our metric computed the same way
    value: float
    source: str  # PaperSource.key


SOURCES: dict[str, PaperSource] = {
    source.key: source
    for source in (
        PaperSource(
            "stfpm_paper", "STFPM paper",
            "Wang, Han, Ding, Huang, Student-Teacher Feature Pyramid Matching for Anomaly Detection, BMVC "
            "2021 (arXiv:2103.04257), MVTec AD mean over 15 categories as listed for the paper on "
            "paperswithcode.com/paper/student-teacher-feature-pyramid-matching-for (detection AUROC 95.5, "
            "segmentation AUROC 97.0)",
            "authors' code (gdwang08/STFPM): ResNet-18, 256 px; image and pixel ROC AUC",
        ),
        PaperSource(
            "rd4ad_paper", "RD4AD paper",
            "Deng, Li, Anomaly Detection via Reverse Distillation from One-Class Embedding, CVPR 2022 "
            "(arXiv:2201.10703), MVTec AD mean over 15 categories as listed under 'Results from the Paper' "
            "on paperswithcode.com/paper/anomaly-detection-via-reverse-distillation (98.5, 97.8, PRO 93.9)",
            "authors' code (hq-deng/RD4AD test.py): 256 px, masks resized bilinearly then > 0.5; PRO = "
            "the authors' per-image PRO (our rd4ad_pro, not the MVTec AUPRO)",
        ),
        PaperSource(
            "rd4ad_paddle", "RD4AD Paddle re-impl.",
            "a PaddlePaddle re-implementation of RD4AD: per-category evaluation printout (9 categories) "
            "and its 15-category mean (98.9, 97.9, PRO 94.4); papers/rd4ad_paddle_reproduction.csv",
            "the RD4AD authors' evaluation: PRO = per-image PRO (our rd4ad_pro, not the MVTec AUPRO)",
        ),
        PaperSource(
            "thesis", "thesis",
            "Polidori 2022, thesis 'Feature Vectors Variance': STFPM, Solution 1 (our stfpm_ensemble) and "
            "Solution 2 (our simple_student), 14 MVTec AD categories (no grid); "
            "papers/thesis_stfpm_variants.csv",
            "ResNet-18 layers 1-3, 224 px, batch 32, SGD 0.4, seed 42; Dice at the threshold maximising "
            "image F1 on the test set (our dice_test_f1_thr)",
        ),
    )
}

#: the 15-category means not in the per-category files (model, metric, value, source)
_MEANS = (
    ("stfpm", "image_auroc", 0.955, "stfpm_paper"),
    ("stfpm", "pixel_auroc", 0.970, "stfpm_paper"),
    ("reverse_distillation", "image_auroc", 0.985, "rd4ad_paper"),
    ("reverse_distillation", "pixel_auroc", 0.978, "rd4ad_paper"),
    ("reverse_distillation", "rd4ad_pro", 0.939, "rd4ad_paper"),
)

#: per-category files: column -> (model, our metric); rows named mean_15_* are 15-category means
_FILES = {
    "thesis_stfpm_variants.csv": ("thesis", {
        "stfpm_image_auroc": ("stfpm", "image_auroc"),
        "ensemble_image_auroc": ("stfpm_ensemble", "image_auroc"),
        "simple_student_image_auroc": ("simple_student", "image_auroc"),
        "stfpm_dice": ("stfpm", "dice_test_f1_thr"),
        "ensemble_dice": ("stfpm_ensemble", "dice_test_f1_thr"),
        "simple_student_dice": ("simple_student", "dice_test_f1_thr"),
    }),
    "rd4ad_paddle_reproduction.csv": ("rd4ad_paddle", {
        "image_auroc": ("reverse_distillation", "image_auroc"),
        "pixel_auroc": ("reverse_distillation", "pixel_auroc"),
        "pixel_aupro_authors_per_image": ("reverse_distillation", "rd4ad_pro"),
    }),
}  # fmt: skip
#: mean rows of the files: row name -> source (None: the same figure is in _MEANS, checked by a test)
_MEAN_ROWS = {"mean_15_reproduction": "rd4ad_paddle", "mean_15_paper": None}

#: the data set names whose categories the paper values refer to
PAPER_DATASETS = ("mvtec",)


def read_paper_file(name: str) -> list[dict[str, str]]:
    """The rows of a package-data table ``papers/<name>`` (readable from an installed wheel)."""
    text = resources.files("anomaly_kd.reporting").joinpath("papers", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@lru_cache(maxsize=1)
def all_paper_values() -> tuple[PaperValue, ...]:
    values = [PaperValue(model, "mean", metric, value, source) for model, metric, value, source in _MEANS]
    for name, (source, columns) in _FILES.items():
        for row in read_paper_file(name):
            category = row["category"]
            if category in _MEAN_ROWS:
                if _MEAN_ROWS[category] is None:
                    continue
                source_here, category = _MEAN_ROWS[category], "mean"
            else:
                source_here = source
            for column, (model, metric) in columns.items():
                if row.get(column, "") != "":
                    values.append(PaperValue(model, category, metric, float(row[column]), source_here))
    return tuple(values)


def paper_columns(models) -> list[tuple[str, str]]:
    """(metric, source) pairs with a published value for any of ``models``, in a fixed order."""
    models = set(models)
    found = {(v.metric, v.source) for v in all_paper_values() if v.model in models}
    source_order = list(SOURCES)
    # by source, then metric name: a set's order changes from one process to the next (hash seed)
    return sorted(found, key=lambda ms: (source_order.index(ms[1]), ms[0]))


def paper_value(model: str | None, data: str | None, category: str, metric: str, source: str) -> float | None:
    """The published value of ``source``, or None (unknown, other data set, or not reported)."""
    if data not in PAPER_DATASETS:
        return None
    for v in all_paper_values():
        if (v.model, v.category, v.metric, v.source) == (model, str(category), metric, source):
            return v.value
    return None


def column_name(metric: str, source: str) -> str:
    return f"{metric}_paper_{source}"


def source_note(source: str) -> str:
    s = SOURCES[source]
    return f"{s.label}: {s.citation}; protocol: {s.protocol}"


__all__ = [
    "PAPER_DATASETS",
    "SOURCES",
    "PaperSource",
    "PaperValue",
    "all_paper_values",
    "column_name",
    "paper_columns",
    "paper_value",
    "read_paper_file",
    "source_note",
]
