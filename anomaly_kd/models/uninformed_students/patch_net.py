"""Patch networks of Uninformed Students (Bergmann et al., CVPR 2020) and their dense form.

Layer tables (paper, supplementary Tables 4-6; read together with the public re-implementations,
which disagree on some entries -- what we use and why is said per row):

p = 65   65 -> conv5 128 -> 61 -> pool2 -> 30 -> conv5 128 -> 26 -> pool2 -> 13 -> conv5 128 -> 9
         -> pool2 -> 4 -> conv4 256 -> 1 -> conv1x1 128 -> 1
         The table gives Conv3 9x9x128 but the following MaxPool 4x4x256 (a pool cannot change the
         channels): we take the conv row (128), as LuyaooChen/uninformed-students-pytorch does
         (denguir/student-teacher-anomaly-detection uses 256). The last row lists a 3x3 kernel
         on a 1x1 input, impossible with valid convolutions: we use 1x1 (as both re-implementations).
p = 33   33 -> conv5 128 -> 29 -> pool2 -> 14 -> conv5 256 -> 10 -> pool2 -> 5 -> conv2 256 -> 4
         -> conv4 128 -> 1            (LuyaooChen's code has a 3x3 first conv, contradicting its
         own 29x29 comment; 5x5 matches the table's sizes.)
p = 17   17 -> conv6 128 -> 12 -> conv5 256 -> 8 -> conv5 256 -> 4 -> conv4 128 -> 1

Leaky ReLU (slope 5e-3) after every convolution but the last, whose output is the d = 128
descriptor (a linear embedding; the decoder of the pretraining sits on it). Valid convolutions.

Effective receptive field: a 2x2/2 max-pool on an odd size drops the last row and column (61 -> 30,
9 -> 4 for p = 65; 29 -> 14 for p = 33), so with the published tables the descriptor of a p x p
input depends on its top-left 60 x 60 (p = 65), 32 x 32 (p = 33) and 17 x 17 (p = 17) pixels.
We keep the tables as published: the patch of pixel (r, c) is the p x p window centred on it,
and its last p - RF rows/columns do not influence the descriptor.

Dense form (``PatchNet.dense``): every pooling becomes a 2x2 max-pool with stride 1 and dilation
equal to the product of the earlier strides, and every later convolution gets that dilation.
Output (r, c) then equals the patch network applied to the window whose top-left corner is
(r, c) -- exactly, not approximately -- for any image size (no multiple-of-stride padding is
needed, unlike the FDFE multi-pool/unwrap form, which computes the same numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_kd.models.components.backbones import IMAGENET_MEAN, IMAGENET_STD

LEAKY_SLOPE = 5e-3  # paper: leaky ReLU with slope 5e-3


@dataclass(frozen=True)
class Layer:
    kind: str  # "conv" or "pool"
    kernel: int
    channels: int = 0  # output channels of a conv


def _conv(k: int, c: int) -> Layer:
    return Layer("conv", k, c)


POOL = Layer("pool", 2)

#: patch size -> layers; the last conv outputs the descriptor (its channels are replaced by d)
LAYER_TABLES: dict[int, tuple[Layer, ...]] = {
    65: (_conv(5, 128), POOL, _conv(5, 128), POOL, _conv(5, 128), POOL, _conv(4, 256), _conv(1, 128)),
    33: (_conv(5, 128), POOL, _conv(5, 256), POOL, _conv(2, 256), _conv(4, 128)),
    17: (_conv(6, 128), _conv(5, 256), _conv(5, 256), _conv(4, 128)),
}


def receptive_field(layers: tuple[Layer, ...]) -> int:
    """Rows (= columns) of input one output descriptor depends on: 1 + sum (k - 1) * stride."""
    rf, stride = 1, 1
    for layer in layers:
        rf += (layer.kernel - 1) * stride
        if layer.kind == "pool":
            stride *= 2
    return rf


def dilated_max_pool2x2(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """2x2 max-pool, stride 1, dilation ``dilation``, as two shifted maxima (rows, then columns):
    the same numbers as ``F.max_pool2d(x, 2, 1, dilation=dilation)``, several times faster on CPU."""
    d = dilation
    rows = torch.maximum(x[..., :-d, :], x[..., d:, :])
    return torch.maximum(rows[..., :-d], rows[..., d:])


class PatchNet(nn.Module):
    """T-hat (and each student): p x p patch -> d-dim descriptor; ``dense`` for whole images.

    ``forward`` takes patches already normalised with :meth:`normalize`; ``dense`` takes images in
    [0, 1], normalises, zero-pads and returns ``[B, d, H, W]``. Input normalisation (ours; the paper
    does not say): ImageNet mean/std, so the zero padding of the border is the mean colour.
    """

    def __init__(self, patch_size: int, descriptor_dim: int = 128):
        super().__init__()
        if patch_size not in LAYER_TABLES:
            raise ValueError(f"patch_size must be one of {sorted(LAYER_TABLES)}, got {patch_size}")
        table = list(LAYER_TABLES[patch_size])
        table[-1] = _conv(table[-1].kernel, descriptor_dim)
        self.patch_size = patch_size
        self.descriptor_dim = descriptor_dim
        self.layers = tuple(table)
        self.receptive_field = receptive_field(self.layers)
        convs, c_in = [], 3
        for layer in self.layers:
            if layer.kind == "conv":
                convs.append(nn.Conv2d(c_in, layer.channels, layer.kernel))
                c_in = layer.channels
        self.convs = nn.ModuleList(convs)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ inputs
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def padding(self) -> tuple[int, int]:
        """(before, after) zero rows/columns so that output (r, c) is the patch centred on (r, c)
        and the output has the input's size: (p-1)/2 before, RF-1-(p-1)/2 after (the rows of a
        centred p x p patch beyond its receptive field are never read)."""
        before = (self.patch_size - 1) // 2
        return before, self.receptive_field - 1 - before

    def pad(self, normalized: torch.Tensor) -> torch.Tensor:
        before, after = self.padding()
        return F.pad(normalized, (before, after, before, after))

    # ------------------------------------------------------------------ patch form
    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, 3, p, p]`` normalised patches -> ``[N, d]``."""
        p = self.patch_size
        if tuple(patches.shape[-2:]) != (p, p):
            raise ValueError(f"expected {p}x{p} patches, got {tuple(patches.shape[-2:])}")
        return self._run(patches, dense=False).flatten(1)

    # ------------------------------------------------------------------ dense form
    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` images in [0, 1] -> ``[B, d, H, W]``: descriptor of every pixel's
        centred patch, the image zero-padded (in normalised space) at its border."""
        return self.dense_valid(self.pad(self.normalize(images)))

    def dense_valid(self, normalized: torch.Tensor) -> torch.Tensor:
        """Dense output without padding: ``[B, 3, H', W']`` -> ``[B, d, H'-RF+1, W'-RF+1]``,
        output (r, c) = ``forward`` of the window with top-left corner (r, c)."""
        return self._run(normalized, dense=True)

    def _run(self, x: torch.Tensor, dense: bool) -> torch.Tensor:
        dilation, convs = 1, iter(self.convs)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if layer.kind == "pool":
                if dense:
                    x = dilated_max_pool2x2(x, dilation)
                    dilation *= 2
                else:
                    x = F.max_pool2d(x, 2, stride=2)
                continue
            conv = next(convs)
            x = F.conv2d(x, conv.weight, conv.bias, dilation=dilation if dense else 1)
            if i != last:
                x = F.leaky_relu(x, LEAKY_SLOPE)
        return x

    # ------------------------------------------------------------------ cost model
    def macs_per_patch(self) -> int:
        """Multiply-accumulates of ``forward`` on one p x p patch (convolutions only)."""
        size, total, c_in = self.patch_size, 0, 3
        for layer in self.layers:
            if layer.kind == "pool":
                size //= 2
                continue
            size = size - layer.kernel + 1
            total += size * size * layer.kernel**2 * c_in * layer.channels
            c_in = layer.channels
        return total

    def macs_dense(self, height: int, width: int) -> int:
        """Multiply-accumulates of ``dense`` on an H x W image (every layer once per position of
        its zero-padded input that some output needs)."""
        h, w = height + self.receptive_field - 1, width + self.receptive_field - 1
        total, c_in, dilation = 0, 3, 1
        for layer in self.layers:
            span = (layer.kernel - 1) * dilation
            h, w = h - span, w - span
            if layer.kind == "pool":
                dilation *= 2
                continue
            total += h * w * layer.kernel**2 * c_in * layer.channels
            c_in = layer.channels
        return total
