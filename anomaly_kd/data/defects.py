"""Synthetic defects with exact masks, shared by the texture generator and the test-folder builder.

Every function takes a uint8 image ``[H, W]`` or ``[H, W, C]`` and a numpy Generator and returns
``(defective uint8 image of the same shape, bool mask [H, W])``. For ``patch``, ``scratch`` and
``hole`` the pixels outside the mask are left exactly as they were and the mask is the region the
defect was drawn into. ``stain`` blends a soft blob in: its mask is defined as the pixels whose
intended change is at least ``STAIN_MASK_LEVEL`` (30 %) of the stain's peak change; outside the mask
the change is smaller than that, and zero where the blob weight is below 5 %.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

DEFECT_KINDS = ("patch", "scratch", "stain", "hole")
STAIN_MASK_LEVEL = 0.3


def random_blob(shape: tuple[int, int], rng: np.random.Generator, size: tuple[float, float], jitter: float = 0.4) -> np.ndarray:
    """A random star-shaped polygon (bool mask) whose radius is ``size`` (fractions of the short side)."""
    h, w = shape
    radius = rng.uniform(*size) * min(h, w) / 2
    cy = rng.uniform(radius, h - radius)
    cx = rng.uniform(radius, w - radius)
    n = int(rng.integers(7, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(1 - jitter, 1.0, n)
    points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles)]
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _paint(image: np.ndarray, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Copy of ``image`` with ``values`` (same shape, float) written into the mask only."""
    out = image.copy()
    out[mask] = np.clip(np.rint(values[mask]), 0, 255).astype(np.uint8)
    return out


def patch(image: np.ndarray, rng: np.random.Generator, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paste a random-shaped piece of ``source`` (another texture), matched to the image's mean/std."""
    h, w = image.shape[:2]
    y = int(rng.integers(0, source.shape[0] - h + 1))
    x = int(rng.integers(0, source.shape[1] - w + 1))
    piece = source[y : y + h, x : x + w].astype(np.float64)
    if piece.ndim < image.ndim:
        piece = np.repeat(piece[:, :, None], image.shape[2], axis=2)
    elif piece.ndim > image.ndim:
        piece = piece.mean(axis=2)
    img = image.astype(np.float64)
    piece = (piece - piece.mean()) / (piece.std() + 1e-6) * img.std() + img.mean()
    mask = random_blob((h, w), rng, size=(0.25, 0.45))
    return _paint(image, mask, piece), mask


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin bright or dark polyline (2-4 segments) that keeps a little of the texture underneath."""
    h, w = image.shape[:2]
    side = min(h, w)
    point = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
    heading = rng.uniform(0, 2 * np.pi)
    points = [tuple(point)]
    for _ in range(int(rng.integers(2, 5))):
        heading += rng.uniform(-0.7, 0.7)
        point = point + rng.uniform(0.12, 0.3) * side * np.array([np.cos(heading), np.sin(heading)])
        point = np.clip(point, 2, [w - 3, h - 3])
        points.append(tuple(point))
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).line(points, fill=1, width=max(2, round(side * rng.uniform(0.012, 0.022))), joint="curve")
    mask = np.asarray(canvas, dtype=bool)
    img = image.astype(np.float64)
    values = 255 - (255 - img) * 0.25 if rng.random() < 0.5 else img * 0.25
    return _paint(image, mask, values), mask


def stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth darker or lighter blob with a soft edge (see the module doc for its mask)."""
    h, w = image.shape[:2]
    blob = random_blob((h, w), rng, size=(0.3, 0.5)).astype(np.float64)
    weight = gaussian_filter(blob, sigma=min(h, w) * rng.uniform(0.03, 0.05))
    weight /= weight.max()
    weight[weight < 0.05] = 0.0
    amplitude = rng.uniform(45, 75) * rng.choice([-1.0, 1.0])
    delta = amplitude * weight
    if image.ndim == 3:
        delta = delta[:, :, None]
    out = np.clip(np.rint(image.astype(np.float64) + delta), 0, 255).astype(np.uint8)
    return out, weight >= STAIN_MASK_LEVEL


def hole(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark region shaded from one side (lit far rim), with a trace of the texture left in it."""
    h, w = image.shape[:2]
    mask = random_blob((h, w), rng, size=(0.18, 0.32), jitter=0.25)
    ys, xs = np.nonzero(mask)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    along = (xx - xs.mean()) * np.cos(angle) + (yy - ys.mean()) * np.sin(angle)
    along /= np.abs(along[mask]).max() + 1e-6  # -1 .. 1 across the hole
    shade = rng.uniform(20, 40) + 25 * np.clip(along, 0, 1) ** 2
    img = image.astype(np.float64)
    if img.ndim == 3:
        shade = shade[:, :, None]
    values = shade + 0.15 * (img - img.mean())
    return _paint(image, mask, values), mask


def apply_defect(
    kind: str, image: np.ndarray, rng: np.random.Generator, source: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch on ``kind`` (one of DEFECT_KINDS); ``patch`` needs a ``source`` texture."""
    if kind == "patch":
        if source is None:
            raise ValueError("the patch defect needs a source image")
        return patch(image, rng, source)
    simple = {"scratch": scratch, "stain": stain, "hole": hole}
    if kind in simple:
        return simple[kind](image, rng)
    raise ValueError(f"unknown defect kind {kind!r}; choose from {', '.join(DEFECT_KINDS)}")
