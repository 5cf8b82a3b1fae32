"""BTAD, the beanTech Anomaly Detection data set (Mishra et al., ISIE 2021).

Layout (``<product>`` is ``01``, ``02`` or ``03``)::

    <root>/<product>/train/ok/*.{bmp,png}
    <root>/<product>/test/ok/*.{bmp,png}
    <root>/<product>/test/ko/*.{bmp,png}
    <root>/<product>/ground_truth/ko/<stem>.{png,bmp}     named like its image (extension may differ)

``category=1`` (how a command line may turn ``01`` into a number) is read as ``01``.
"""

from __future__ import annotations

from pathlib import Path

from anomaly_kd.data.indexed import (
    IndexedDataModule,
    check_unique_stems,
    masks_by_stem,
    pair_masks,
    require_images,
)
from anomaly_kd.data.mvtec import Sample, category_dir

BTAD_CATEGORIES = ("01", "02", "03")
OK, KO = "ok", "ko"


class BTADDataModule(IndexedDataModule):
    title = "BTAD"
    official_categories = BTAD_CATEGORIES

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        root = Path(self.root).expanduser()
        if self.category.isdigit() and not (root / self.category).is_dir():
            self.category = f"{int(self.category):02d}"

    def index(self):
        folder = category_dir(self.root, self.category, BTAD_CATEGORIES, self.title)
        train = [Sample(str(p), 0, "good") for p in require_images(folder / "train" / OK, "the normal training images")]
        good = require_images(folder / "test" / OK, "the normal test images")
        bad = require_images(folder / "test" / KO, "the anomalous test images")
        check_unique_stems(bad)
        gt_dir = folder / "ground_truth" / KO
        masks = masks_by_stem(gt_dir)
        test = [Sample(str(p), 0, "good") for p in good]
        test += pair_masks(bad, masks, KO, gt_dir, folder / "test" / KO)
        return train, None, test
