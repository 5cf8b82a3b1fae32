"""Gaussian smoothing of anomaly maps as a torch op, equal to ``scipy.ndimage.gaussian_filter``.

RD4AD's authors smooth each summed map with ``gaussian_filter(anomaly_map, sigma=4)``
(hq-deng/RD4AD test.py, ``evaluation``), i.e. scipy's defaults: a kernel truncated at
``radius = int(truncate * sigma + 0.5)`` with ``truncate=4.0`` (33 taps for sigma 4) and
``mode='reflect'`` borders (half-sample symmetric: ``d c b a | a b c d | d c b a``, the edge pixel
repeated; torch's ``F.pad(mode='reflect')`` is scipy's ``'mirror'`` instead, so it is not used).
Doing it in torch keeps maps on the GPU and inside exported graphs. The filter is separable and
applied along H then W, as scipy filters axis 0 then axis 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Normalised 1-D kernel of ``scipy.ndimage._filters._gaussian_kernel1d`` (order 0), float64."""
    if sigma <= 0:
        raise ValueError("sigma must be > 0")
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return kernel / kernel.sum()


def symmetric_indices(size: int, radius: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices that extend ``range(size)`` by ``radius`` on each side as scipy's ``'reflect'``
    (also for ``radius > size``: the reflection repeats with period ``2 * size``)."""
    index = torch.remainder(torch.arange(-radius, size + radius, device=device), 2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


class GaussianBlur2d(nn.Module):
    """Depthwise Gaussian blur of ``[B, C, H, W]`` maps, equal to ``gaussian_filter`` per map."""

    def __init__(self, sigma: float = 4.0, truncate: float = 4.0):
        super().__init__()
        self.sigma, self.truncate = float(sigma), float(truncate)
        kernel = gaussian_kernel1d(self.sigma, self.truncate)
        self.radius = (kernel.numel() - 1) // 2
        self.register_buffer("kernel", kernel.float(), persistent=False)

    def _blur_along(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        index = symmetric_indices(x.shape[dim], self.radius, x.device)
        padded = x.index_select(dim, index)
        taps = self.kernel.numel()
        weight = self.kernel.to(x.dtype).view((1, 1, taps, 1) if dim == 2 else (1, 1, 1, taps))
        # Every channel as its own single-channel map: a weight of static shape, so the op also
        # exports to ONNX (a weight expanded to the input's channel count does not).
        flat = padded.reshape(-1, 1, padded.shape[2], padded.shape[3])
        out = F.conv2d(flat, weight)
        return out.reshape(x.shape[0], x.shape[1], out.shape[2], out.shape[3])

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self._blur_along(self._blur_along(maps, 2), 3)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, truncate={self.truncate}, taps={self.kernel.numel()}"
