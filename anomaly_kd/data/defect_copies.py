"""Synthetic defects drawn on copies of validation normals: a label-free yardstick.

Validation holds normal images only, so it can rank checkpoints or scoring rules by how normal
images score, never by how well defects are told apart. :class:`DefectCopies` adds that second
half without touching a test label (the idea of anomalib's ``ValSplitMode.SYNTHETIC``, with this
project's own defect generator, :mod:`anomaly_kd.data.defects`): item ``i`` of the wrapped
normal data set becomes a defective copy with an exact mask.

Real defects are often much smaller than the image (MVTec 3D-AD tire: dark specks a few pixels
across), while the generator sizes its blobs to the image it is given. Each defect is therefore
drawn into a random square window of ``window`` x the image side and pasted back: the mask is the
window's mask at its place, zero elsewhere, and every pixel outside the window is the normal
image's own. ``patch`` takes its texture from the same window of another item (``(i + 1) % n``),
so no outside image is needed.

Everything is a function of (``seed``, ``i``): the kind is ``kinds[i % len(kinds)]``, the window
and the defect come from ``numpy.random.default_rng([seed, i])``, so the copies are the same in
every epoch, every process and every worker.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from anomaly_kd.data.defects import DEFECT_KINDS, apply_defect
from anomaly_kd.errors import UserError

#: the path suffix that marks a synthetic copy (``<normal path>#synthetic-<kind>``)
SUFFIX = "#synthetic-"


class DefectCopies(Dataset):
    """Defective copies of the items of ``normals`` (dicts with uint8 ``image [3, S, S]``).

    Each item is the normal item with ``image`` defective, ``mask`` the uint8 ``[1, S, S]`` defect
    mask, ``label`` 1, ``defect`` the kind and ``path`` ``<path>#synthetic-<kind>``.
    """

    def __init__(self, normals: Dataset, seed: int = 0, window: float = 0.25, kinds: tuple[str, ...] = DEFECT_KINDS):
        if not 0.0 < float(window) <= 1.0:
            raise UserError(f"the synthetic defect window must be a fraction in (0, 1], got {window!r}")
        unknown = [k for k in kinds if k not in DEFECT_KINDS]
        if unknown or not kinds:
            raise UserError(f"synthetic defect kinds must be some of {', '.join(DEFECT_KINDS)}, got {list(kinds)!r}")
        if "patch" in kinds and len(normals) < 2:
            raise UserError("the 'patch' defect needs at least two validation images; drop it from the kinds")
        self.normals, self.seed, self.window, self.kinds = normals, int(seed), float(window), tuple(kinds)

    def __len__(self) -> int:
        return len(self.normals)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.normals[index])
        kind = self.kinds[index % len(self.kinds)]
        source = self.normals[(index + 1) % len(self.normals)]["image"] if kind == "patch" else None
        image, mask = draw_in_window(item["image"], kind, np.random.default_rng([self.seed, index]), self.window, source)
        label = torch.ones_like(item["label"]) if isinstance(item["label"], torch.Tensor) else 1
        item.update(image=image, mask=mask, label=label, defect=kind, path=f"{item['path']}{SUFFIX}{kind}")
        return item


def draw_in_window(
    image: torch.Tensor, kind: str, rng: np.random.Generator, window: float, source: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[3, S, S]`` -> (defective uint8 ``[3, S, S]``, uint8 mask ``[1, S, S]``): one defect
    of ``kind`` drawn into a random ``window * S`` square (at least 8 pixels) and pasted back."""
    channels, height, width = image.shape
    side = min(max(8, round(window * min(height, width))), height, width)
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    pixels = image.permute(1, 2, 0).numpy()
    crop = np.ascontiguousarray(pixels[y : y + side, x : x + side])
    texture = None if source is None else np.ascontiguousarray(source.permute(1, 2, 0).numpy())
    defective, crop_mask = apply_defect(kind, crop, rng, texture)
    out = pixels.copy()
    out[y : y + side, x : x + side] = defective
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y : y + side, x : x + side] = crop_mask
    return torch.from_numpy(out).permute(2, 0, 1).contiguous(), torch.from_numpy(mask)[None]
