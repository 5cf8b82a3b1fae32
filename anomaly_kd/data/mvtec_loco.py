"""MVTec LOCO AD (Bergmann et al., "Beyond Dents and Scratches", IJCV 2022).

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/validation/good/*.png
    <root>/<category>/test/{good,logical_anomalies,structural_anomalies}/*.png
    <root>/<category>/ground_truth/<type>/<image stem>/000.png, 001.png, ...   one file per defect
    <root>/<category>/defects_config.json    [{defect_name, pixel_value, saturation_threshold, relative_saturation}]

The masks of one image are merged by logical OR (any non-zero pixel) for the standard pixel
metrics. ``validation/good`` is the validation set (``merge_validation: true``: the ``val_split``
hold-out instead). Results: the metrics of the whole test set, plus ``subsets`` ``logical``,
``structural`` (the good test images + that type) and ``all``, each with ``spro``: the sPRO of
:mod:`anomaly_kd.metrics.spro` up to ``spro_fpr_limit``, one region per mask file, its saturation
from the entry of ``defects_config.json`` whose ``pixel_value`` the file holds.
The false positive rate counts the defect-free pixels of every evaluated image (good or
defective), as the official evaluation (mvtec_loco_ad_evaluation ``metrics.py``) does.

sPRO is computed where the other pixel metrics are (``eval_resolution``): at native resolution
exactly as the paper; at model resolution each defect mask is resized by ``data.mask_resize`` and
an absolute saturation threshold (pixels of the original image) is scaled by the area ratio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from anomaly_kd.data.images import join_mask_files, list_images, mask_files, resize_mask
from anomaly_kd.data.indexed import (
    IndexedDataModule,
    check_unique_stems,
    missing_mask,
    orphan_mask,
    require_images,
)
from anomaly_kd.data.mvtec import GOOD, Sample, category_dir
from anomaly_kd.errors import UserError
from anomaly_kd.metrics.spro import auspro, saturation_area

MVTEC_LOCO_CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
CONFIG_KEYS = ("pixel_value", "saturation_threshold", "relative_saturation")


def read_defects_config(path: Path) -> dict[int, tuple[float, bool]]:
    """``pixel_value -> (saturation_threshold, relative_saturation)`` from ``defects_config.json``."""
    if not path.is_file():
        raise UserError(f"{path} not found; MVTec LOCO ships it in every category folder (it gives the sPRO "
                        "saturation of each defect type): restore it")
    try:
        entries = json.loads(path.read_text())
        return {int(e["pixel_value"]): (float(e["saturation_threshold"]), bool(e["relative_saturation"]))
                for e in entries}
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} is not a LOCO defects config (a list of objects with {', '.join(CONFIG_KEYS)}): "
                        f"{err}; restore the original file") from err


class MVTecLOCODataModule(IndexedDataModule):
    title = "MVTec LOCO AD"
    official_categories = MVTEC_LOCO_CATEGORIES

    def __init__(self, *args, merge_validation: bool = False, spro_fpr_limit: float = 0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.merge_validation = bool(merge_validation)
        if not 0 < float(spro_fpr_limit) <= 1:
            raise UserError(f"data.spro_fpr_limit={spro_fpr_limit!r} must be in (0, 1]; the paper uses 0.05")
        self.spro_fpr_limit = float(spro_fpr_limit)
        self.defects: dict[int, tuple[float, bool]] = {}
        # (mask file, map shape) -> its region, saturation entry and native area: read once, reused by
        # the whole test set's sPRO and each subset's
        self._regions: dict[tuple[str, tuple[int, int]], tuple[np.ndarray, float, bool, int]] = {}

    def index(self):
        folder = category_dir(self.root, self.category, MVTEC_LOCO_CATEGORIES, self.title)
        self.defects = read_defects_config(folder / "defects_config.json")
        train = [Sample(str(p), 0, GOOD) for p in require_images(folder / "train" / GOOD, "the normal training images")]
        val = [Sample(str(p), 0, GOOD) for p in require_images(folder / "validation" / GOOD,
                                                                "the normal validation images")]
        test = [Sample(str(p), 0, GOOD) for p in require_images(folder / "test" / GOOD, "the normal test images")]
        kinds = sorted(p.name for p in (folder / "test").iterdir() if p.is_dir() and p.name != GOOD)
        for kind in kinds:
            images = require_images(folder / "test" / kind, f"the {kind} test images")
            check_unique_stems(images)
            gt_dir = folder / "ground_truth" / kind
            for image in images:
                masks = list_images(gt_dir / image.stem)
                if not masks:
                    raise missing_mask(image, gt_dir / image.stem / "000")
                test.append(Sample(str(image), 1, kind, join_mask_files(masks)))
            stems = {p.stem for p in images}
            for extra in sorted(gt_dir.iterdir()) if gt_dir.is_dir() else []:
                if extra.is_dir() and extra.name not in stems and list_images(extra):
                    raise orphan_mask(list_images(extra)[0], folder / "test" / kind / extra.name)
        if self.merge_validation:
            return train + val, None, test
        return train, val, test

    # ------------------------------------------------------------ results per anomaly type, sPRO
    def test_subsets(self) -> dict[str, list[int]]:
        """Test-set positions of ``logical``, ``structural`` (good + that type) and ``all``."""
        samples = self._dataset("test_set").samples
        good = [i for i, s in enumerate(samples) if s.label == 0]
        subsets = {}
        for kind in sorted({s.defect for s in samples if s.label}):
            name = kind.removesuffix("_anomalies")
            subsets[name] = sorted(good + [i for i, s in enumerate(samples) if s.defect == kind])
        subsets["all"] = list(range(len(samples)))
        return subsets

    def test_metrics(self, state, indices) -> dict:
        """``spro`` of the images ``indices`` of the test set, whose maps ``state`` holds in that
        order (None, with a note, when undefined)."""
        samples = self._dataset("test_set").samples
        maps = state.maps
        if maps is None:
            return {"spro": None}
        # As the official evaluation (mvtec_loco_ad_evaluation, metrics.get_fp_areas_for_thresholds):
        # the FPR counts the defect-free pixels of every evaluated image, i.e. all pixels of the good
        # images and, in a defective image, the pixels outside all of its defects.
        defect_free, regions, saturation = [], [], []
        for position, index in enumerate(indices):
            amap, sample = np.asarray(maps[position]), samples[int(index)]
            if not sample.label:
                defect_free.append(amap.reshape(-1))
                continue
            union = np.zeros(amap.shape, dtype=bool)
            for path in mask_files(sample.mask_path):
                region, threshold, relative, native_area = self._region(path, amap.shape)
                union |= region
                if region.any():
                    regions.append(amap[region])
                    area = threshold if relative else threshold * region.size / native_area
                    saturation.append(saturation_area(region.sum(), area, relative))
            defect_free.append(amap[~union])
        try:
            return {"spro": auspro(defect_free, regions, saturation, self.spro_fpr_limit)}
        except ValueError as error:
            return {"spro": None, "notes": [f"spro: {error}"]}

    def _region(self, path: str, shape: tuple[int, int]) -> tuple[np.ndarray, float, bool, int]:
        """The defect of one mask file at ``shape`` (bool), its config entry and its native area."""
        cached = self._regions.get((path, tuple(shape)))
        if cached is not None:
            return cached
        with Image.open(path) as im:
            raw = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16") else im)
        values = np.unique(raw[raw > 0])
        if values.size != 1 or int(values[0]) not in self.defects:
            raise UserError(f"mask {path} holds pixel value(s) {values.tolist()}; defects_config.json defines "
                            f"{sorted(self.defects)} and each mask file must hold one defect; fix the mask or the config")
        threshold, relative = self.defects[int(values[0])]
        region = raw > 0
        if region.shape != tuple(shape):
            if shape[0] != shape[1]:
                raise ValueError(f"cannot bring mask {path} to the non-square map shape {shape}")
            region = resize_mask(region, int(shape[0]), self.mask_resize)[0].numpy().astype(bool)
        self._regions[(path, tuple(shape))] = region, threshold, relative, raw.size
        return self._regions[(path, tuple(shape))]
