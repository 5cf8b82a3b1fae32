"""MVTec AD 2 (Heckler-Kram et al., 2025), its public test set.

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/validation/good/*.png
    <root>/<category>/test_public/good/*.png
    <root>/<category>/test_public/bad/*.png
    <root>/<category>/test_public/ground_truth/bad/<stem>_mask.png

The private test sets (``test_private``, ``test_private_mixed``) have no labels: they are scored
only by the publisher's server and are not read here. ``validation/good`` is the validation set;
``merge_validation: true`` adds it to training and holds out ``val_split`` instead.
"""

from __future__ import annotations

from anomaly_kd.data.indexed import (
    IndexedDataModule,
    check_unique_stems,
    masks_by_stem,
    pair_masks,
    require_images,
)
from anomaly_kd.data.mvtec import GOOD, MASK_SUFFIX, Sample, category_dir

MVTEC_AD2_CATEGORIES = (
    "can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts",
)  # fmt: skip
BAD = "bad"


class MVTecAD2DataModule(IndexedDataModule):
    title = "MVTec AD 2"
    official_categories = MVTEC_AD2_CATEGORIES

    def __init__(self, *args, merge_validation: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.merge_validation = bool(merge_validation)

    def index(self):
        folder = category_dir(self.root, self.category, MVTEC_AD2_CATEGORIES, self.title)
        train = [Sample(str(p), 0, GOOD) for p in require_images(folder / "train" / GOOD, "the normal training images")]
        val = [Sample(str(p), 0, GOOD) for p in require_images(folder / "validation" / GOOD,
                                                                "the normal validation images")]
        public = folder / "test_public"
        good = require_images(public / GOOD, "the normal public test images")
        bad = require_images(public / BAD, "the anomalous public test images")
        check_unique_stems(bad)
        gt_dir = public / "ground_truth" / BAD
        masks = masks_by_stem(gt_dir, MASK_SUFFIX)
        test = [Sample(str(p), 0, GOOD) for p in good]
        test += pair_masks(bad, masks, BAD, gt_dir, public / BAD, MASK_SUFFIX)
        if self.merge_validation:
            return train + val, None, test
        return train, val, test
