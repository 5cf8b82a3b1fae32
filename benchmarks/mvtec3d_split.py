"""The MVTec 3D-AD layout, with the data set's own train/validation split, rebuilt from an MVTec-AD-layout copy.

``../shared/data/mvtec3d_tire256`` stores MVTec 3D-AD's "tire" in the MVTec AD layout: its
``train/good`` holds the data set's ``train`` images (file names prefixed ``t``) and its
``validation`` images (prefixed ``v``) together (the copy's README). ``data=mvtec`` then holds out
a seeded 20 % of all of them; ``data=mvtec3d``, the data set's own loader, trains on ``train`` and
validates on ``validation``. This module links the copy's files into the layout ``data=mvtec3d``
reads, so that rows can run with the split the data set's authors published::

    <dst>/<category>/train/good/rgb/t*.png        <- <src>/<category>/train/good/t*.png
    <dst>/<category>/validation/good/rgb/v*.png   <- <src>/<category>/train/good/v*.png
    <dst>/<category>/test/<defect>/rgb/<stem>.png <- <src>/<category>/test/<defect>/<stem>.png
    <dst>/<category>/test/<defect>/gt/<stem>.png  <- <src>/<category>/ground_truth/<defect>/<stem>_mask.png

Files are symbolic links (nothing is copied or re-encoded). A link already in place with the right
target is kept, so rows started side by side can call ``build`` on the same ``dst`` while another row
reads it; a link with another target is replaced. Nothing else is read from the names: the images,
masks and test set are the copy's.
"""

from __future__ import annotations

import os
from pathlib import Path

from anomaly_kd.data.mvtec import index_category
from anomaly_kd.errors import UserError

PREFIXES = {"t": "train", "v": "validation"}  # file-name prefix in the copy's train/good -> the data set's split


def _link(target: Path, link: Path) -> None:
    target = target.resolve()
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        os.symlink(target, link)
    except FileExistsError:  # another row linked it in the meantime
        if Path(os.readlink(link)) != target:
            raise


def build(src: Path, category: str, dst: Path) -> Path:
    """Link ``src/<category>`` (MVTec AD layout, t/v-prefixed normals) into ``dst/<category>`` (MVTec 3D-AD
    layout); returns ``dst`` (the ``paths.data_dir`` of ``data=mvtec3d``). The copy is read by ``data=mvtec``'s
    own indexer (its checks: masks paired by name, sizes); a copy that fails them, or whose normals are not
    all t/v-prefixed, raises UserError naming the file or folder."""
    train, test = index_category(src / category)
    for sample in train:
        if Path(sample.path).name[:1] not in PREFIXES:
            raise UserError(f"{sample.path} starts with neither 't' (train) nor 'v' (validation): its split is unknown")
    for prefix, split in PREFIXES.items():
        if not any(Path(sample.path).name.startswith(prefix) for sample in train):
            raise UserError(f"{src / category / 'train' / 'good'} has no '{split}' images (names starting with '{prefix}')")
    out = dst / category
    for sample in train:
        image = Path(sample.path)
        _link(image, out / PREFIXES[image.name[0]] / "good" / "rgb" / image.name)
    for sample in test:
        image = Path(sample.path)
        _link(image, out / "test" / sample.defect / "rgb" / image.name)
        if sample.mask_path:
            _link(Path(sample.mask_path), out / "test" / sample.defect / "gt" / (image.stem + Path(sample.mask_path).suffix))
    return dst
