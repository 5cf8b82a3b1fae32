"""data=mvtec_loco: several masks per image merged, defects_config.json, per-type results, sPRO."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomaly_kd.data.images import mask_files
from anomaly_kd.data.mvtec_loco import MVTEC_LOCO_CATEGORIES, MVTecLOCODataModule
from anomaly_kd.metrics import AnomalyMetricState
from tests.data.layouts import LOCO_DEFECTS, SIZE, datamodule, run_end_to_end, setup_error, write_mvtec_loco
from tests.metrics.test_metrics_spro import reference_auspro

CAT = "breakfast_box"


def rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def test_layout_indexed_masks_merged_and_subsets(tmp_path):
    root = write_mvtec_loco(tmp_path / "loco")
    dm = datamodule(MVTecLOCODataModule, root, CAT, image_size=SIZE)
    assert len(dm.train_set) == 5 and len(dm.val_set) == 2
    test = dm.test_set.samples
    assert [(s.defect, s.label) for s in test] == [("good", 0)] * 2 + [("logical_anomalies", 1)] * 2 + [
        ("structural_anomalies", 1)] * 2
    assert [rel(root, m) for m in mask_files(test[2].mask_path)] == [
        f"{CAT}/ground_truth/logical_anomalies/000/000.png", f"{CAT}/ground_truth/logical_anomalies/000/001.png"]
    files = [np.asarray(Image.open(m)) for m in mask_files(test[2].mask_path)]
    assert np.array_equal(dm.test_set[2]["mask"][0].numpy(), ((files[0] > 0) | (files[1] > 0)).astype(np.uint8))
    assert dm.test_subsets() == {"logical": [0, 1, 2, 3], "structural": [0, 1, 4, 5], "all": [0, 1, 2, 3, 4, 5]}
    assert dm.defects == {255: (20.0, False), 37: (0.5, True)}


def test_spro_of_the_datamodule_matches_a_plain_reference(tmp_path):
    root = write_mvtec_loco(tmp_path / "loco")
    dm = datamodule(MVTecLOCODataModule, root, CAT, image_size=SIZE, spro_fpr_limit=0.3)
    samples = dm.test_set.samples
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 50, (6, SIZE, SIZE)) / 50.0
    labels = np.array([s.label for s in samples])
    state = AnomalyMetricState.from_arrays(maps.max(axis=(1, 2)), labels, maps, np.zeros_like(maps, bool))
    config = {d["pixel_value"]: d for d in LOCO_DEFECTS}
    # the official evaluation's FPR pixels: every pixel of the good images, and the pixels of the
    # defective images outside all of their defects
    good, regions, saturation = [maps[i] for i in (0, 1)], [], []
    for i in range(2, 6):
        union = np.zeros((SIZE, SIZE), bool)
        for path in mask_files(samples[i].mask_path):
            raw = np.asarray(Image.open(path))
            entry = config[int(raw.max())]
            union |= raw > 0
            regions.append(maps[i][raw > 0])
            area = int((raw > 0).sum())
            threshold = entry["saturation_threshold"]
            saturation.append(threshold * area if entry["relative_saturation"] else min(threshold, area))
        good.append(maps[i][~union])
    assert len(regions) == 5 and 0 < sum(g.size for g in good[2:]) < 4 * SIZE * SIZE
    assert dm.test_metrics(state, range(6))["spro"] == pytest.approx(reference_auspro(good, regions, saturation, 0.3),
                                                                     abs=1e-12)


@pytest.mark.parametrize("break_it, expected", [
    (lambda r: shutil.rmtree(r / CAT / "ground_truth/structural_anomalies/001"),
     "structural_anomalies/001.png has no mask; expected"),
    (lambda r: shutil.copytree(r / CAT / "ground_truth/logical_anomalies/001", r / CAT / "ground_truth/logical_anomalies/007"),
     "logical_anomalies/007/000.png has no test image"),
    (lambda r: (r / CAT / "defects_config.json").unlink(), "defects_config.json not found"),
    (lambda r: (r / CAT / "defects_config.json").write_text('[{"defect_name": "x"}]'), "is not a LOCO defects config"),
    (lambda r: shutil.rmtree(r / CAT / "test/good"), "test/good is missing"),
])
def test_mismatch_errors(tmp_path, break_it, expected):
    root = write_mvtec_loco(tmp_path / "loco")
    break_it(root)
    assert expected in setup_error(MVTecLOCODataModule, root, CAT)


def test_unknown_category_lists_the_official_names(tmp_path):
    root = write_mvtec_loco(tmp_path / "loco")
    message = setup_error(MVTecLOCODataModule, root, "breakfast")
    assert f"categories there: {CAT}" in message and ", ".join(MVTEC_LOCO_CATEGORIES) in message


def test_end_to_end_reports_each_anomaly_type_and_spro(tmp_path):
    root = write_mvtec_loco(tmp_path / "loco")
    results = run_end_to_end("mvtec_loco", root, CAT, tmp_path / "out")
    metrics = results["metrics"]
    assert results["data"] == "mvtec_loco" and metrics["n_images"] == 6 and metrics["n_anomalous"] == 4
    subsets = metrics["subsets"]
    assert sorted(subsets) == ["all", "logical", "structural"]
    assert [subsets[k]["n_images"] for k in ("logical", "structural")] == [4, 4]
    assert [subsets[k]["n_anomalous"] for k in ("logical", "structural")] == [2, 2]
    same = {k: v for k, v in metrics.items() if k not in ("subsets", "metric_seconds", "image_threshold_val",
                                                          "pixel_threshold_val")}
    assert {k: v for k, v in subsets["all"].items() if k != "metric_seconds"} == same  # all = the whole test set
    for subset in subsets.values():
        assert subset["spro"] is not None and 0.0 <= subset["spro"] <= 1.0
