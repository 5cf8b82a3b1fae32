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
(r, c) -- exactly, not approximately -- for any image size.

How it is computed (``dense_valid``): space-to-batch, i.e. Bergmann et al.'s "fast dense"
multi-pool/unwrap trick. A layer with dilation s only combines positions that are congruent
modulo s, so the map is split into its s x s interleaved sub-grids (phase (i, j) = rows i, i+s,
..., columns j, j+s, ...), stacked in the batch dimension, and every layer runs UNDILATED on them
(a stride-1 pool, then each sub-grid split again into 2 x 2 for the next stride); the sub-grids
are interleaved back at the end. The same sums and maxima as the dilated form: equal to float
round-off (the convolution kernels may add in another order). Why: on CPU the input-gradient of
PyTorch's dilated convolutions (oneDNN) collapses on large maps -- the p = 33 descriptor layer
(4x4, 256 -> 128, dilation 4, 256 x 256 output) took 113 s for its backward on one core, 0.6 s
undilated -- which made dense student training ~5 minutes per image (benchmarks/README.md,
"Uninformed Students training step"). To keep every sub-grid the same size, the map is padded at
its end (bottom, right) to a multiple of the stride; what those padded rows feed lies past the
valid output and is cropped. ``dense_valid_dilated`` keeps the dilated form, the reference of
the tests.
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
        output (r, c) = ``forward`` of the window with top-left corner (r, c). Computed in
        space-to-batch form (module docstring); the numbers of :meth:`dense_valid_dilated`."""
        return self._run_space_to_batch(normalized)

    def dense_valid_dilated(self, normalized: torch.Tensor) -> torch.Tensor:
        """:meth:`dense_valid` with dilated pools and convolutions on the full map (the reference
        form; its convolution backward is very slow on CPU for large maps)."""
        return self._run(normalized, dense=True)

    def _run_space_to_batch(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        out_h, out_w = height - self.receptive_field + 1, width - self.receptive_field + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(f"input {height}x{width} is smaller than the receptive field {self.receptive_field}")
        stride = 1  # x is [B * stride^2, C, h, w]; phase (i, j) at batch index (b, i, j) = row i + stride * m
        convs, last = iter(self.convs), len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if layer.kind == "conv":
                conv = next(convs)
                x = F.conv2d(x, conv.weight, conv.bias)
                if i != last:
                    x = F.leaky_relu(x, LEAKY_SLOPE)
                continue
            x = dilated_max_pool2x2(x, 1)  # = the full map's pool of dilation ``stride``
            # pad each sub-grid to an even size (rows past the valid output), split it 2 x 2
            h, w = x.shape[-2:]
            if h % 2 or w % 2:
                x = F.pad(x, (0, w % 2, 0, h % 2))
                h, w = h + h % 2, w + w % 2
            c = x.shape[1]
            # [B, si, sj, C, h/2, a, w/2, b] -> [B, a, si, b, sj, C, h/2, w/2]: new phase a * s + i
            x = x.reshape(batch, stride, stride, c, h // 2, 2, w // 2, 2)
            x = x.permute(0, 5, 1, 7, 2, 3, 4, 6)
            stride *= 2
            x = x.reshape(batch * stride * stride, c, h // 2, w // 2)
        if stride > 1:  # interleave the sub-grids back: [B, si, sj, C, h, w] -> [B, C, h, si, w, sj]
            c, h, w = x.shape[1:]
            x = x.reshape(batch, stride, stride, c, h, w).permute(0, 3, 4, 1, 5, 2)
            x = x.reshape(batch, c, h * stride, w * stride)
        return x[..., :out_h, :out_w]

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
