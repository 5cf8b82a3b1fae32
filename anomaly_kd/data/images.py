"""Reading image/mask files and turning them into the batch format shared by every data set.

Batch item (a dict; the default collate keeps the strings as lists of strings):

* ``image``: float32 ``[3, S, S]`` in ``[0, 1]``, RGB, bilinear + antialias resize, NOT normalised.
* ``label``: int64 scalar, 0 normal, 1 anomalous.
* ``mask``: float32 ``[1, S, S]`` in ``{0, 1}`` (resized by ``data.mask_resize``, see
  :func:`mask_tensor`; nearest by default); zeros when none.
* ``path``, ``mask_path`` (``''`` when none), ``defect`` (``'good'`` for normal): str.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from anomaly_kd.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    """An image by extension (case-insensitive); hidden files such as ``.DS_Store`` are skipped."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (empty if the folder is missing)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def _unreadable(path: Path, err: BaseException) -> UserError:
    reason = " ".join(str(err).split()) or type(err).__name__
    return UserError(f"cannot read image file {path} ({reason}); replace it with a valid image or delete it")


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only; a non-image file raises UserError naming it."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise _unreadable(path, err) from err


def _open_decoded(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()  # decodes everything: a truncated file fails here, not later
        return im
    except Exception as err:
        raise _unreadable(path, err) from err


def _high_depth_to_uint8(im: Image.Image) -> np.ndarray:
    """16-bit ('I;16*', or 'I' as some readers give 16-bit PNGs) and float ('F') grey to uint8."""
    a = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    is_16bit = im.mode.startswith("I;16") or im.format == "PNG" or (a.size and a.max() > 255)
    if is_16bit:  # 0..65535 -> 0..255 (65535 / 257 = 255 exactly)
        return np.rint(np.clip(a, 0, 65535) / 257.0).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def load_rgb(path: Path | str) -> np.ndarray:
    """Decode any supported image to uint8 ``[H, W, 3]``.

    Grey is repeated to 3 channels, alpha is dropped (the colour channels are kept as stored),
    palette images are expanded, 16-bit images are scaled to 8 bit (x / 257, not clipped).
    """
    im = _open_decoded(Path(path))
    if im.mode.startswith("I") or im.mode == "F":
        grey = _high_depth_to_uint8(im)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")  # honours palette transparency; alpha dropped below
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)


def load_mask(path: Path | str) -> np.ndarray:
    """Decode a mask to bool ``[H, W]``: any non-zero (non-alpha) channel is defective."""
    im = _open_decoded(Path(path))
    if im.mode in ("P", "1"):
        im = im.convert("L")
    bands = [b for b in im.getbands() if b not in ("A", "a")]
    if len(bands) < len(im.getbands()):
        im = im.convert("RGB" if len(bands) >= 3 else "L")
    a = np.asarray(im)
    return a.any(axis=2) if a.ndim == 3 else a > 0


def native_mask(path: Path | str, mask_path: Path | str = "") -> np.ndarray:
    """The ground truth at the image's original size, bool ``[H, W]`` (for evaluation at native
    resolution): the mask file decoded and binarised like :func:`load_mask`, or, without a mask
    (normal images), all False at the size read from the image file's header (no decoding)."""
    if mask_path:
        return load_mask(mask_path)
    width, height = image_size_of(Path(path))
    return np.zeros((height, width), dtype=bool)


def image_tensor(pixels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``[H, W]`` or ``[H, W, 3]`` -> float32 ``[3, size, size]`` in [0, 1] (bilinear, antialias)."""
    t = torch.from_numpy(np.ascontiguousarray(pixels))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    t = t.float().div_(255.0)
    if t.shape[0] == 1:
        t = t.repeat(3, 1, 1)
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        t = t.clamp_(0.0, 1.0)
    return t.contiguous()


#: how a ground-truth mask is brought to the model's size (``data.mask_resize``)
MASK_RESIZE_RULES = ("nearest", "stfpm", "rd4ad")


def mask_tensor(mask: np.ndarray | None, size: int, rule: str = "nearest") -> torch.Tensor:
    """bool ``[H, W]`` (or None: all zeros) -> float32 ``[1, size, size]`` in {0, 1}.

    ``rule`` (``data.mask_resize``):

    - ``nearest`` (ours, default): nearest neighbour (``nearest-exact``: half-pixel centres), so
      every pixel keeps the label of the original pixel under its centre;
    - ``stfpm``: the STFPM authors' ``load_gt`` (gdwang08/STFPM main.py): ``cv2.resize`` of the
      0/255 mask (INTER_LINEAR: bilinear, half-pixel centres, no antialiasing) to 8 bit, then
      ``astype(bool)``: any pixel whose interpolated value rounds to a non-zero level (>= 0.5/255)
      is defective. Computed in float32 with torch's bilinear (``align_corners=False``), which has
      cv2's coordinates; cv2 quantises the weights to 11 bits, which can move a pixel whose value
      is within about 2^-11 of the rounding point;
    - ``rd4ad``: the RD4AD authors' ``gt_transform`` (hq-deng/RD4AD dataset.py + test.py):
      torchvision ``Resize`` of the 8-bit PIL mask (PIL bilinear, which antialiases when
      shrinking, rounded to 8 bit), then ``ToTensor`` and ``gt > 0.5``. Done with PIL, as theirs.

    Both authors' rules grow thin defects by up to a pixel (stfpm) or shrink them (rd4ad) compared
    with nearest; README "Ground-truth resizing" gives their effect on the pixel metrics.
    """
    if rule not in MASK_RESIZE_RULES:
        raise UserError(f"data.mask_resize={rule!r} must be one of {', '.join(MASK_RESIZE_RULES)}")
    if mask is None:
        return torch.zeros(1, size, size, dtype=torch.float32)
    if tuple(mask.shape) == (size, size):
        return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)).float()[None]
    if rule == "rd4ad":
        grey = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
        resized = np.asarray(grey.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        return torch.from_numpy(resized > 0.5).float()[None]
    t = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    if rule == "stfpm":
        t = F.interpolate(t * 255.0, size=(size, size), mode="bilinear", align_corners=False)
        return (t[0] >= 0.5).float()
    t = F.interpolate(t, size=(size, size), mode="nearest-exact")
    return (t[0] > 0).float()


def make_item(
    image: torch.Tensor, label: int, mask: torch.Tensor, path: str, mask_path: str, defect: str
) -> dict:
    return {
        "image": image,
        "label": torch.tensor(int(label), dtype=torch.int64),
        "mask": mask,
        "path": str(path),
        "mask_path": str(mask_path),
        "defect": str(defect),
    }
