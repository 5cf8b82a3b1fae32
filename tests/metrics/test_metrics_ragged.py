"""Pixel metrics on images of different sizes (native resolution) and the compact metric state."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from anomaly_kd.metrics import (
    AnomalyMetricState,
    RaggedImages,
    aupro,
    dice,
    pixel_auroc,
    pro_curve,
    roc_curve,
)

_spec = importlib.util.spec_from_file_location("reference_pro", Path(__file__).with_name("reference_pro.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

SHAPES = [(9, 13), (16, 16), (5, 21), (12, 7), (16, 16)]


def _ragged(seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for k, (h, w) in enumerate(shapes):
        mask = np.zeros((h, w), bool)
        if k % 2 == 0:  # images 0, 2, 4 anomalous; regions touch the borders on purpose
            mask[: h // 2, w // 3 :] = True
            mask[-1, :2] = True
        maps.append((rng.standard_normal((h, w)) + 1.2 * mask).astype(np.float32))
        masks.append(mask)
    return maps, masks


def _reference_aupro(maps, masks, limit):
    """The plain reference of test_metrics_aupro, image by image (regions never cross images)."""
    fp, pro, n_normal, n_regions = [], [], 0, 0
    for m, g in zip(maps, masks):
        regions, n = ndimage.label(g, structure=np.ones((3, 3), dtype=int))
        fp_step, pro_step = (regions == 0).astype(np.float64), np.zeros(g.shape)
        for r in range(1, n + 1):
            pro_step[regions == r] = 1.0 / (regions == r).sum()
        fp.append(fp_step.ravel()), pro.append(pro_step.ravel())
        n_normal, n_regions = n_normal + int(fp_step.sum()), n_regions + n
    scores = np.concatenate([m.ravel() for m in maps])
    order = np.argsort(scores, kind="stable")[::-1]
    fpr = np.cumsum(np.concatenate(fp)[order]) / n_normal
    pro_ = np.cumsum(np.concatenate(pro)[order]) / n_regions
    last = np.append(np.diff(scores[order]) != 0, True)
    fpr = np.concatenate([[0.0], np.clip(fpr[last], None, 1.0), [1.0]])
    pro_ = np.concatenate([[0.0], np.clip(pro_[last], None, 1.0), [1.0]])
    return reference.reference_trapezoid(fpr, pro_, limit) / limit


def _pooled_auroc(maps, masks):
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    y = np.concatenate([g.ravel() for g in masks])
    pos, neg = s[y], s[~y]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (pos.size * neg.size)


@pytest.mark.parametrize("limit", [0.3, 1.0, 0.05])
def test_aupro_of_images_of_different_sizes_matches_the_reference(limit):
    maps, masks = _ragged()
    assert aupro(maps, masks, limit) == pytest.approx(_reference_aupro(maps, masks, limit), abs=1e-9)
    fpr, pro = pro_curve(maps, masks, limit, max_points=None)
    assert np.trapezoid(pro, fpr) / limit == pytest.approx(_reference_aupro(maps, masks, limit), abs=1e-9)


def test_regions_do_not_cross_images():
    # stacked as one tall image, the regions at the bottom of image 0 and the top of image 1 merge
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[-1, :] = b[0, :] = True
    maps = [np.arange(16, dtype=np.float32).reshape(4, 4), np.arange(16, dtype=np.float32).reshape(4, 4)[::-1]]
    per_image = aupro(maps, [a, b], 1.0)
    assert per_image == pytest.approx(_reference_aupro(maps, [a, b], 1.0), abs=1e-12)
    assert per_image == aupro(np.stack(maps), np.stack([a, b]), 1.0)  # same size: the [N,H,W] path


def test_pooled_metrics_of_different_sizes():
    maps, masks = _ragged(seed=1)
    assert pixel_auroc(maps, masks) == pytest.approx(_pooled_auroc(maps, masks), abs=1e-12)
    flat_m = np.concatenate([m.ravel() for m in maps])
    flat_g = np.concatenate([g.ravel() for g in masks])
    for thr in (0.0, 0.7, 1.5):
        predicted = flat_m >= thr
        expected = 2 * (predicted & flat_g).sum() / (predicted.sum() + flat_g.sum())
        assert dice(maps, masks, thr) == pytest.approx(expected, abs=1e-15)
    fpr, tpr, _ = roc_curve(maps, masks)
    fpr2, tpr2, _ = roc_curve(flat_m, flat_g)
    np.testing.assert_array_equal(fpr, fpr2)
    np.testing.assert_array_equal(tpr, tpr2)


def test_list_of_equal_sizes_equals_the_array_and_inputs_may_be_tensors():
    maps, masks = _ragged(seed=2, shapes=[(10, 12)] * 5)
    dense_m, dense_g = np.stack(maps), np.stack(masks)
    as_tensors = [torch.from_numpy(m)[None] for m in maps], [torch.from_numpy(g)[None] for g in masks]
    for fn in (pixel_auroc, aupro):
        assert fn(maps, masks) == fn(dense_m, dense_g) == fn(*as_tensors)
    ragged = RaggedImages(dense_m.ravel(), [(10, 12)] * 5)
    assert aupro(ragged, RaggedImages(dense_g.ravel(), ragged.shapes)) == aupro(dense_m, dense_g)


def test_ragged_errors():
    maps, masks = _ragged()
    with pytest.raises(ValueError, match="same shapes"):
        aupro(maps, masks[::-1])
    with pytest.raises(ValueError, match="same shapes"):
        pixel_auroc(maps[:-1], masks)
    with pytest.raises(ValueError, match="binary"):
        dice(maps, [g.astype(np.float32) * 2 for g in masks], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        aupro([np.full((3, 3), np.nan)], [np.eye(3, dtype=bool)])
    with pytest.raises(ValueError, match="pixels"):
        RaggedImages(np.zeros(10), [(3, 3)])


def test_ragged_images_container():
    maps, _ = _ragged()
    r = RaggedImages.from_list(maps)
    assert len(r) == len(maps) and r.size == sum(m.size for m in maps) and r.dtype == np.float32
    for a, b in zip(r, maps):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(r[-1], maps[-1])
    assert np.asarray(r).shape == (r.size,) and r.sum() == pytest.approx(sum(m.sum() for m in maps), rel=1e-5)


# ---------------------------------------------------------------- the state, native resolution


def _fill(state, maps, masks, batch=2):
    scores = np.array([m.max() for m in maps], dtype=np.float64)
    labels = np.array([g.any() for g in masks])
    for start in range(0, len(maps), batch):
        part = slice(start, start + batch)
        state.update(maps[part], scores[part], labels[part], masks[part])
    return state, scores, labels


def _without_time(result):
    return {k: v for k, v in result.items() if k != "metric_seconds"}


def test_state_with_images_of_different_sizes():
    maps, masks = _ragged()
    state, scores, labels = _fill(AnomalyMetricState(True, fpr_limit=0.3), maps, masks)
    assert isinstance(state.maps, RaggedImages) and [tuple(s) for s in state.shapes] == SHAPES
    for a, b, c, d in zip(state.maps, maps, state.masks, masks):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
    result = state.compute(pixel_threshold=1.0)
    assert result["pixel_auroc"] == pixel_auroc(maps, masks)
    assert result["aupro"] == aupro(maps, masks, 0.3)
    assert result["dice_val_thr"] == dice(maps, masks, 1.0)
    assert result["dice_test_f1_thr"] == dice(maps, masks, result["test_f1_threshold"])
    assert result["n_images"] == 5 and result["notes"] == []


def test_state_is_compact_maps_float32_masks_bits():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((6, 32, 32)).astype(np.float32)
    masks = rng.random((6, 32, 32)) > 0.9
    state = AnomalyMetricState(True)
    state.update(maps[:3], np.zeros(3), [0, 1, 1], masks[:3])
    state.update(maps[3:], np.zeros(3), [0, 1, 1], masks[3:])
    pixels = maps.size
    assert state.nbytes <= pixels * 4 + pixels // 8 + 6 * (8 + 1 + 16) + 16
    assert state.maps.dtype == np.float32 and state.maps.shape == (6, 32, 32)
    np.testing.assert_array_equal(state.masks, masks)  # unpacked exactly
    arrays = state.state_arrays()
    assert arrays["mask_bits"].dtype == np.uint8 and arrays["mask_bits"].size == pixels // 8
    assert arrays["maps"].ndim == 1 and arrays["shapes"].tolist() == [[32, 32]] * 6


def test_take_and_compact_round_trip_restore_the_order():
    maps, masks = _ragged(seed=3)
    whole, scores, labels = _fill(AnomalyMetricState(True), maps, masks)
    # as a DDP gather does it: shards in another order, rebuilt from compact arrays, merged, put back
    order = [3, 0, 4, 1, 2]
    shards = [[order[0], order[1]], order[2:]]
    states = []
    for shard in shards:
        s = AnomalyMetricState(True)
        s.update([maps[i] for i in shard], scores[shard], labels[shard], [masks[i] for i in shard])
        states.append(AnomalyMetricState.from_arrays(**s.state_arrays()))
    merged = AnomalyMetricState.merge(states)
    restored = merged.take(np.argsort(order))
    np.testing.assert_array_equal(restored.scores, scores)
    for a, b, c, d in zip(restored.maps, maps, restored.masks, masks):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
    assert _without_time(restored.compute(0.5, 1.0)) == _without_time(whole.compute(0.5, 1.0))
    # without masks, take works on scores only
    plain = AnomalyMetricState(False)
    plain.update(None, scores, labels)
    np.testing.assert_array_equal(plain.take([4, 0]).scores, scores[[4, 0]])
    assert plain.take([4, 0]).maps is None
