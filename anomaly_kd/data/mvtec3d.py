"""MVTec 3D-AD (Bergmann et al., VISAPP 2022), RGB images only.

Layout::

    <root>/<category>/train/good/rgb/*.png
    <root>/<category>/validation/good/rgb/*.png
    <root>/<category>/test/<defect>/rgb/*.png        (test/good = normal)
    <root>/<category>/test/<defect>/gt/*.png         same name as the rgb image

The ``xyz`` point clouds (``*.tiff``) are ignored. The data set's own ``validation/good`` is the
validation set; ``merge_validation: true`` adds it to the training images and holds out the seeded
``val_split`` share instead, as for MVTec AD.
"""

from __future__ import annotations

from anomaly_kd.data.indexed import (
    IndexedDataModule,
    check_unique_stems,
    masks_by_stem,
    pair_masks,
    require_images,
)
from anomaly_kd.data.mvtec import GOOD, Sample, category_dir
from anomaly_kd.errors import UserError

MVTEC3D_CATEGORIES = (
    "bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire",
)  # fmt: skip


class MVTec3DDataModule(IndexedDataModule):
    title = "MVTec 3D-AD"
    official_categories = MVTEC3D_CATEGORIES

    def __init__(self, *args, merge_validation: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.merge_validation = bool(merge_validation)

    def index(self):
        folder = category_dir(self.root, self.category, MVTEC3D_CATEGORIES, self.title)
        train = [Sample(str(p), 0, GOOD) for p in require_images(folder / "train" / GOOD / "rgb",
                                                                  "the normal training images")]
        val = [Sample(str(p), 0, GOOD) for p in require_images(folder / "validation" / GOOD / "rgb",
                                                                "the normal validation images")]
        test_dir = folder / "test"
        defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
        test: list[Sample] = []
        for defect in defects:
            images = require_images(test_dir / defect / "rgb", f"the '{defect}' test images")
            check_unique_stems(images)
            if defect == GOOD:
                test += [Sample(str(p), 0, GOOD) for p in images]
                continue
            gt_dir = test_dir / defect / "gt"
            test += pair_masks(images, masks_by_stem(gt_dir), defect, gt_dir, test_dir / defect / "rgb")
        if not test:
            raise UserError(f"{test_dir} has no test folders; it must hold test/good/rgb and test/<defect>/{{rgb,gt}}")
        if self.merge_validation:
            return train + val, None, test
        return train, val, test
