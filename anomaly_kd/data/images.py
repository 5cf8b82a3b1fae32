"""Reading image/mask files and turning them into the batch format shared by every data set.

Batch item (a dict; the default collate keeps the strings as lists of strings), as a data set gives it:

* ``image``: uint8 ``[3, S, S]``, RGB: the decoded pixels resized to ``S x S`` (bilinear, antialias,
  on the [0, 1] floats) and rounded once to the nearest 1/255 (:func:`resize_image`). NOT normalised.
* ``label``: int64 scalar, 0 normal, 1 anomalous.
* ``mask``: uint8 ``[1, S, S]`` in ``{0, 1}`` (resized by ``data.mask_resize``, see
  :func:`resize_mask`; nearest by default); zeros when none.
* ``path``, ``mask_path`` (``''`` when none; several mask files of one image, merged by logical OR,
  are joined by ``os.pathsep``, see :func:`mask_files`), ``defect`` (``'good'`` for normal): str.
* ``index``: int, the item's position in its data set (keys the teacher-feature cache, orders
  the DDP gathers).

Uint8 crosses to the device (4x fewer bytes, pinned memory, non-blocking on GPU); there
:func:`batch_to_float` (the models' ``on_after_batch_transfer``) makes ``image`` float32 in
``[0, 1]`` (``uint8 / 255``) and ``mask`` float32 in ``{0, 1}``: what every model, callback and
metric reads. A batch whose ``image`` is already float is left as it is.
"""

from __future__ import annotations

import os
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


def mask_files(mask_path: Path | str) -> list[str]:
    """The mask files of a ``mask_path``: one path, or several joined by ``os.pathsep`` (MVTec
    LOCO has one file per defect of an image); ``[]`` for ``''``."""
    return [p for p in str(mask_path).split(os.pathsep) if p] if mask_path else []


def join_mask_files(paths) -> str:
    """Several mask files of one image as one ``mask_path`` (inverse of :func:`mask_files`)."""
    return os.pathsep.join(str(p) for p in paths)


def load_mask(path: Path | str) -> np.ndarray:
    """Decode a mask to bool ``[H, W]``: any non-zero (non-alpha) channel is defective. Several
    files (see :func:`mask_files`) are merged by logical OR; they must share a size."""
    files = mask_files(path)
    if len(files) > 1:
        masks = [load_mask(f) for f in files]
        for f, m in zip(files[1:], masks[1:]):
            if m.shape != masks[0].shape:
                raise UserError(f"mask {f} is {m.shape[1]}x{m.shape[0]} but {files[0]} of the same image is "
                                f"{masks[0].shape[1]}x{masks[0].shape[0]}; masks must have the size of their image")
        return np.logical_or.reduce(masks)
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


#: How images and masks are resized: part of the decoded-image cache's key (change it with the code).
RESIZE_SETTINGS = "image:bilinear,antialias,align_corners=False,float32,round-to-uint8;mask:data.mask_resize"


def resize_image(pixels: np.ndarray, size: int, channels: int = 3) -> torch.Tensor:
    """uint8 ``[H, W]`` or ``[H, W, 3]`` -> uint8 ``[channels, size, size]`` (grey repeated to 3).

    The resize (bilinear, antialias, align_corners=False) runs on the float32 values in [0, 1]; its
    result is rounded once to the nearest 1/255 (``round(x * 255)``, halves to even), so a cached
    and a decoded-on-the-fly batch are the same bytes. Without a resize the pixels are kept as
    stored. ``channels=1`` keeps a grey source's single channel (a cache of grey images stores a
    third of the bytes; the three channels of a grey image are resized identically).
    """
    t = torch.from_numpy(np.ascontiguousarray(pixels))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    if channels == 1 and t.shape[0] != 1:
        raise ValueError("resize_image(channels=1) needs a grey [H, W] image")
    if t.shape[0] == 1 and channels == 3:
        t = t.expand(3, -1, -1)
    if tuple(t.shape[-2:]) == (size, size):
        return t.contiguous()
    f = t.float().div_(255.0)
    f = F.interpolate(f[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return f.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def image_tensor(pixels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``[H, W]`` or ``[H, W, 3]`` -> float32 ``[3, size, size]`` in [0, 1]: exactly what a
    batch's ``image`` becomes on the device (:func:`resize_image`, then ``/ 255``)."""
    return image_to_float(resize_image(pixels, size))


#: how a ground-truth mask is brought to the model's size (``data.mask_resize``)
MASK_RESIZE_RULES = ("nearest", "stfpm", "rd4ad")


def resize_mask(mask: np.ndarray | None, size: int, rule: str = "nearest") -> torch.Tensor:
    """bool ``[H, W]`` (or None: all zeros) -> uint8 ``[1, size, size]`` in {0, 1}.

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
        return torch.zeros(1, size, size, dtype=torch.uint8)
    if tuple(mask.shape) == (size, size):
        return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)).to(torch.uint8)[None]
    if rule == "rd4ad":
        grey = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
        resized = np.asarray(grey.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        return torch.from_numpy(resized > 0.5).to(torch.uint8)[None]
    t = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    if rule == "stfpm":
        t = F.interpolate(t * 255.0, size=(size, size), mode="bilinear", align_corners=False)
        return (t[0] >= 0.5).to(torch.uint8)
    t = F.interpolate(t, size=(size, size), mode="nearest-exact")
    return (t[0] > 0).to(torch.uint8)


def mask_tensor(mask: np.ndarray | None, size: int, rule: str = "nearest") -> torch.Tensor:
    """bool ``[H, W]`` (or None: all zeros) -> float32 ``[1, size, size]`` in {0, 1}: what a batch's
    ``mask`` becomes on the device (:func:`resize_mask`, then float)."""
    return resize_mask(mask, size, rule).float()


def image_to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape) -> float32 in [0, 1] (``/ 255``); float images are returned as they are."""
    if image.dtype == torch.uint8:
        return image.float().div_(255.0)
    return image


def batch_to_float(batch):
    """The batch with ``image`` float32 in [0, 1] and ``mask`` float32 in {0, 1}; run on the device
    after the uint8 tensors crossed (see the module docstring). Anything but a dict is returned as is."""
    if not isinstance(batch, dict):
        return batch
    out = dict(batch)
    if isinstance(out.get("image"), torch.Tensor):
        out["image"] = image_to_float(out["image"])
    mask = out.get("mask")
    if isinstance(mask, torch.Tensor) and not mask.is_floating_point():
        out["mask"] = mask.float()
    return out
