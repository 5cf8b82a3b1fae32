"""Uninformed Students patch networks: layer tables, receptive fields, dense == patch-wise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomaly_kd.models.uninformed_students.patch_net import (
    LAYER_TABLES,
    PatchNet,
    dilated_max_pool2x2,
)
from anomaly_kd.models.uninformed_students.torch_model import UninformedStudentsModel, crop_tiles

PATCH_SIZES = (17, 33, 65)
#: effective receptive field of the published tables (2x2/2 pools drop a row on odd sizes)
EFFECTIVE_RF = {17: 17, 33: 32, 65: 60}


def _net(p: int, seed: int = 0) -> PatchNet:
    torch.manual_seed(seed)
    return PatchNet(p).eval()


def _patchwise(net: PatchNet, images: torch.Tensor) -> torch.Tensor:
    """Reference: the patch network on the centred p x p patch of every pixel, zero-padded image."""
    p, half = net.patch_size, (net.patch_size - 1) // 2
    padded = F.pad(net.normalize(images), (half, half, half, half))
    b, _, h, w = images.shape
    patches = padded.unfold(2, p, 1).unfold(3, p, 1)  # [B, 3, H, W, p, p]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, p, p)
    with torch.no_grad():
        out = torch.cat([net(chunk) for chunk in patches.split(64)])
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)


def test_layer_tables_shapes_and_channels():
    expected = {  # (kind, kernel, out channels) as stated in patch_net.py's docstring
        65: ["c5:128", "p", "c5:128", "p", "c5:128", "p", "c4:256", "c1:128"],
        33: ["c5:128", "p", "c5:256", "p", "c2:256", "c4:128"],
        17: ["c6:128", "c5:256", "c5:256", "c4:128"],
    }
    for p, layers in LAYER_TABLES.items():
        names = ["p" if layer.kind == "pool" else f"c{layer.kernel}:{layer.channels}" for layer in layers]
        assert names == expected[p]
    for p in PATCH_SIZES:
        net = _net(p)
        assert net.receptive_field == EFFECTIVE_RF[p]
        with torch.no_grad():
            out = net(torch.randn(3, 3, p, p))
        assert out.shape == (3, 128)
        with pytest.raises(ValueError):
            net(torch.randn(1, 3, p + 8, p + 8))
    assert PatchNet(17, descriptor_dim=32)(torch.randn(2, 3, 17, 17)).shape == (2, 32)


@pytest.mark.parametrize("p", PATCH_SIZES)
def test_receptive_field_one_pixel_changes(p):
    """The descriptor of the patch at offset (m, m) of a larger image depends on the pixels of
    its effective receptive field and on nothing outside the p x p patch."""
    net, m = _net(p, seed=1), 3
    image = torch.randn(1, 3, p + 2 * m, p + 2 * m)
    with torch.no_grad():
        base = net.dense_valid(image)[0, :, m, m]

    def changed(y: int, x: int) -> bool:
        other = image.clone()
        other[0, :, y, x] += 10.0
        with torch.no_grad():
            return not torch.equal(net.dense_valid(other)[0, :, m, m], base)

    rf = EFFECTIVE_RF[p]
    inside = [(0, 0), (0, rf - 1), (rf - 1, 0), (rf - 1, rf - 1), (rf // 2, rf // 2)]
    assert all(changed(m + y, m + x) for y, x in inside)
    outside = [(m - 1, m + p // 2), (m + p // 2, m - 1), (m + p, m + p // 2), (m + p // 2, m + p), (0, 0)]
    assert not any(changed(y, x) for y, x in outside)
    # rows/columns of the p x p patch beyond the effective field (p = 65, 33) do not count either
    assert not any(changed(m + rf + k, m + rf // 2) for k in range(p - rf))


@pytest.mark.parametrize("p", PATCH_SIZES)
@pytest.mark.parametrize("size", [(9, 8), (8, 7)])  # odd and even heights and widths
def test_dense_equals_patchwise(p, size):
    net = _net(p, seed=2)
    images = torch.rand(2 if p != 65 else 1, 3, *size)
    with torch.no_grad():
        dense = net.dense(images)
    reference = _patchwise(net, images)
    assert dense.shape == (images.shape[0], 128, *size)
    assert torch.allclose(dense, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("p", PATCH_SIZES)
@pytest.mark.parametrize("size", [(1, 9, 8), (2, 8, 7), (1, 21, 16)])  # odd/even, sizes not multiples of the stride
def test_space_to_batch_equals_dilated_outputs_and_gradients(p, size):
    """dense_valid (space-to-batch) == dense_valid_dilated (the dilated form): outputs, weight
    gradients and input gradients, to float round-off; ties of the max-pools included (the
    zero-padded border is constant, so its pooled neighbours tie)."""
    b, h, w = size
    net = _net(p, seed=4)
    rf = net.receptive_field
    torch.manual_seed(5)
    images = torch.rand(b, 3, h, w)
    window = net.pad(net.normalize(images))  # border of equal values: max-pool ties
    window = torch.cat([window, torch.randn(b, 3, h + rf - 1, w + rf - 1)])  # and a generic case
    target = torch.randn(2 * b, 128, h, w)
    results = []
    for run in (net.dense_valid, net.dense_valid_dilated):
        net.zero_grad(set_to_none=True)
        x = window.clone().requires_grad_(True)
        out = run(x)
        ((out - target) ** 2).sum(dim=1).mean().backward()
        results.append((out.detach(), x.grad, [q.grad for q in net.parameters()]))
    (out, x_grad, grads), (ref, ref_x_grad, ref_grads) = results
    assert out.shape == ref.shape == (2 * b, 128, h, w)

    def close(a, r):
        return (a - r).abs().max() <= 1e-5 * r.abs().max()

    assert close(out, ref) and close(x_grad, ref_x_grad)
    assert all(close(g, r) for g, r in zip(grads, ref_grads))


def test_space_to_batch_equals_patchwise_on_a_crop_window():
    """The training path (crop windows -> dense_valid) against the patch network itself."""
    for p in (33, 65):
        net = _net(p, seed=6)
        images = torch.rand(1, 3, 11, 13)
        reference = _patchwise(net, images)
        with torch.no_grad():
            assert torch.allclose(net.dense(images), reference, atol=1e-5, rtol=0)
            windows = net.pad(net.normalize(images))[..., 2 : 2 + 5 + net.receptive_field - 1, 3:]
            assert torch.allclose(net.dense_valid(windows), reference[..., 2:7, 3:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        net.dense_valid(torch.zeros(1, 3, net.receptive_field - 1, net.receptive_field))


def test_dilated_pool_matches_max_pool2d():
    x = torch.randn(2, 4, 13, 10)
    for d in (1, 2, 4):
        assert torch.equal(dilated_max_pool2x2(x, d), F.max_pool2d(x, 2, stride=1, dilation=d))


def test_crop_windows_give_the_full_image_dense_output():
    torch.manual_seed(3)
    model = UninformedStudentsModel(patch_sizes=[17, 33], n_students=2)
    model.descriptor_mean.zero_()
    model.descriptor_std.fill_(1.0)
    images = torch.rand(2, 3, 20, 18)
    for scale in range(2):
        teacher = model.teachers[scale]
        with torch.no_grad():
            full = teacher.dense(images)
        torch.manual_seed(5)
        windows = model.crop_windows(scale, images, crop=6)
        torch.manual_seed(5)  # the same random tiles, drawn as crop_windows draws them
        ys, xs = [0, 6, 12, 14], [0, 6, 12]  # crop_tiles(20, 6), crop_tiles(18, 6)
        tiles = [int(torch.randint(0, 12, ())) for _ in range(2)]
        offsets = [(ys[t // 3], xs[t % 3]) for t in tiles]
        with torch.no_grad():
            out = teacher.dense_valid(windows)
        assert out.shape == (2, 128, 6, 6)
        for b, (y, x) in enumerate(offsets):
            assert torch.allclose(out[b], full[b, :, y : y + 6, x : x + 6], atol=1e-6)
        target, outputs = model.training_pair(scale, images, crop=None)
        assert target.shape == (2, 128, 20, 18) and len(outputs) == 2


def test_crop_tiles_cover_every_position_equally():
    # crop divides the side: every output position lies in exactly one tile
    starts = crop_tiles(256, 64)
    assert starts == [0, 64, 128, 192]
    coverage = np.zeros(256, int)
    for s in starts:
        coverage[s : s + 64] += 1
    assert (coverage == 1).all()
    # it does not: the last tile is flush with the edge, its overlap covered twice, nothing missed
    assert crop_tiles(20, 6) == [0, 6, 12, 14]
    coverage = np.zeros(20, int)
    for s in crop_tiles(20, 6):
        coverage[s : s + 6] += 1
    assert coverage.min() == 1 and coverage.max() == 2 and (coverage[14:18] == 2).all()
    assert crop_tiles(7, 7) == [0] and crop_tiles(7, 1) == list(range(7))
    with pytest.raises(ValueError):
        crop_tiles(7, 8)


def test_crop_windows_draw_every_tile_alike():
    # a 16 px image, crop 4: 16 tiles, each drawn about 1/16 of the time, the corner tile included
    # (a start drawn from 0..12 would put the corner pixel into a crop once in 169 draws)
    model = UninformedStudentsModel(patch_sizes=[17], n_students=1)
    net = model.teachers[0]
    half = net.receptive_field // 2  # the zero padding on each side
    index = torch.arange(256.0).view(1, 1, 16, 16).expand(1, 3, 16, 16)  # pixel (y, x) holds 16 y + x
    torch.manual_seed(1)
    counts = {}
    for _ in range(1600):
        window = model.crop_windows(0, index, crop=4)
        # the window's first valid output position sits on the crop's top-left pixel
        first = round(float(window[0, 0, half, half] * net.std[0, 0] + net.mean[0, 0]))
        counts[divmod(first, 16)] = counts.get(divmod(first, 16), 0) + 1
    assert sorted(counts) == [(y, x) for y in (0, 4, 8, 12) for x in (0, 4, 8, 12)]
    assert min(counts.values()) > 50  # of an expected 100 each


def test_students_have_distinct_initialisations_and_mac_counts():
    model = UninformedStudentsModel(patch_sizes=[17], n_students=3)
    weights = [s.convs[0].weight for s in model.students[0]]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    again = UninformedStudentsModel(patch_sizes=[17], n_students=3)
    assert torch.equal(again.students[0][1].convs[0].weight, weights[1])  # seeded
    net = PatchNet(17)
    # p = 17 has no pooling: dense on one pixel is exactly one patch
    assert net.macs_dense(1, 1) == net.macs_per_patch() == 81_158_144
    assert PatchNet(65).macs_per_patch() == 346_345_856


def test_benchmark_worker_smoke():
    """benchmarks/dense_inference.py in-process on a tiny case (the benchmark itself is not a test)."""
    import importlib.util

    from tests.helpers import REPO

    path = REPO / "benchmarks" / "dense_inference.py"
    spec = importlib.util.spec_from_file_location("dense_inference", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    base = dict(size=10, students=2, device="cpu", repeats=1, threads=0, naive_pixels=4, naive_batch=4, p=17)
    dense = bench.worker({**base, "kind": "dense"})
    naive = bench.worker({**base, "kind": "naive"})
    assert dense["max_abs_diff_e_v"] < 1e-4 and naive["seconds"] > naive["seconds_measured"] > 0
    (naive_macs, dense_macs) = bench.mac_counts([17], 2, 10)[17]
    assert naive_macs == 3 * 81_158_144 * 100 and dense_macs == 3 * PatchNet(17).macs_dense(10, 10)


def test_training_step_benchmark_smoke():
    """benchmarks/us_training_step.py helpers on a tiny case (the benchmark itself is not a test)."""
    import importlib.util

    from tests.helpers import REPO

    spec = importlib.util.spec_from_file_location("us_training_step", REPO / "benchmarks" / "us_training_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for p in PATCH_SIZES:
        net = _net(p, seed=7)
        assert sum(bench.layer_macs(net, 6)) == net.macs_dense(6, 6)
        window = net.pad(net.normalize(torch.rand(1, 3, 6, 6)))
        target = torch.randn(1, 128, 6, 6)
        s2b, dilated = (bench.step(net, m, window, target) for m in ("s2b", "dilated"))
        assert bench.rel_diff(s2b["out"], dilated["out"]) < 1e-5
        assert max(bench.rel_diff(a, b) for a, b in zip(s2b["grads"], dilated["grads"])) < 1e-5
