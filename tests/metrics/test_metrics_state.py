"""AnomalyMetricState: accumulate, compute, merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_kd.metrics import (
    AnomalyMetricState,
    aupro,
    dice,
    f1_optimal_threshold,
    image_ap,
    image_auroc,
    image_f1,
    pixel_ap,
    pixel_auroc,
    rd4ad_pro,
)


def _epoch(seed=0, n=12, size=16):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2 == 1
    masks = np.zeros((n, size, size), bool)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(0, size - 5, 2)
        masks[i, y : y + 5, x : x + 4] = True
    maps = (rng.standard_normal(masks.shape) + 1.5 * masks).astype(np.float32)
    scores = maps.reshape(n, -1).max(axis=1).astype(np.float64)
    return maps, scores, labels, masks


def _fill(state, maps, scores, labels, masks, batch=5, tensors=False):
    for start in range(0, len(scores), batch):
        part = slice(start, start + batch)
        m, s, y, g = maps[part], scores[part], labels[part], masks[part]
        if tensors:  # [B,1,H,W] tensors, int labels
            m, s = torch.from_numpy(m)[:, None], torch.from_numpy(s)
            y, g = torch.from_numpy(y.astype(np.int64)), torch.from_numpy(g)[:, None]
        state.update(m, s, y, g)
    return state


def _without_time(result):
    return {k: v for k, v in result.items() if k != "metric_seconds"}


def test_compute_matches_functional_api():
    maps, scores, labels, masks = _epoch()
    state = _fill(
        AnomalyMetricState(has_masks=True, fpr_limit=0.2), maps, scores, labels, masks, tensors=True
    )
    result = state.compute(pixel_threshold=1.0, image_threshold=2.0)
    thr = f1_optimal_threshold(scores, labels)
    assert "rd4ad_pro" not in result  # opt-in
    assert state.compute(rd4ad_pro=True)["rd4ad_pro"] == rd4ad_pro(maps, masks)
    assert result["image_auroc"] == image_auroc(scores, labels)
    assert result["image_ap"] == image_ap(scores, labels)
    assert result["pixel_ap"] == pixel_ap(maps, masks)
    assert result["pixel_auroc"] == pixel_auroc(maps, masks)
    assert result["aupro"] == aupro(maps, masks, 0.2)
    assert result["test_f1_threshold"] == thr
    assert result["image_f1_test_thr"] == image_f1(scores, labels, thr)
    assert result["dice_test_f1_thr"] == dice(maps, masks, thr)
    assert result["dice_val_thr"] == dice(maps, masks, 1.0)
    assert result["image_f1_val_thr"] == image_f1(scores, labels, 2.0)
    assert (result["n_images"], result["n_anomalous"], result["notes"]) == (12, 6, [])
    assert result["metric_seconds"] >= 0
    assert state.maps.shape == (12, 16, 16) and state.maps.dtype == np.float32
    assert state.masks.dtype == bool and state.labels.dtype == bool
    np.testing.assert_array_equal(state.scores, scores)


def test_without_masks_maps_are_not_kept():
    maps, scores, labels, _ = _epoch()
    state = AnomalyMetricState(has_masks=False)
    state.update(maps, scores, labels)
    state.update(None, scores, labels)
    result = state.compute(pixel_threshold=0.5)
    assert state.maps is None and state.masks is None
    assert result["image_auroc"] == image_auroc(np.tile(scores, 2), np.tile(labels, 2))
    for key in ("pixel_auroc", "aupro", "dice_test_f1_thr", "dice_val_thr", "image_f1_val_thr"):
        assert result[key] is None


def test_merge_of_halves_equals_one_state():
    maps, scores, labels, masks = _epoch(seed=1, n=20)
    whole = _fill(AnomalyMetricState(True), maps, scores, labels, masks)
    first = _fill(AnomalyMetricState(True), maps[:7], scores[:7], labels[:7], masks[:7])
    second = _fill(AnomalyMetricState(True), maps[7:], scores[7:], labels[7:], masks[7:])
    merged = AnomalyMetricState.merge([first, second])
    assert _without_time(merged.compute(0.5, 1.0)) == _without_time(whole.compute(0.5, 1.0))
    # as a multi-process gather would do it: arrays -> states -> merge
    rebuilt = [AnomalyMetricState.from_arrays(**s.state_arrays()) for s in (first, second)]
    rebuilt.append(AnomalyMetricState.from_arrays(**AnomalyMetricState(True).state_arrays()))  # empty
    assert _without_time(AnomalyMetricState.merge(rebuilt).compute(0.5, 1.0)) == _without_time(
        whole.compute(0.5, 1.0)
    )


def test_single_class_gives_none_with_notes():
    maps, scores, labels, masks = _epoch()
    normal = ~labels
    state = AnomalyMetricState(True)
    state.update(maps[normal], scores[normal], labels[normal], masks[normal])
    result = state.compute(image_threshold=0.0)
    for key in (
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "test_f1_threshold",
        "image_f1_test_thr",
        "dice_test_f1_thr",
        "image_f1_val_thr",
    ):
        assert result[key] is None
    assert any(note.startswith("image_auroc: no anomalous") for note in result["notes"])
    assert result["n_anomalous"] == 0
    with pytest.raises(ValueError, match="no anomalous"):
        image_auroc(state.scores, state.labels)


def test_update_errors():
    maps, scores, labels, masks = _epoch()
    state = AnomalyMetricState(True)
    with pytest.raises(ValueError, match="needs maps and masks"):
        state.update(maps, scores, labels)
    with pytest.raises(ValueError, match="labels"):
        state.update(maps, scores, labels[:-1], masks)
    with pytest.raises(ValueError, match="maps"):
        state.update(maps[:-1], scores, labels, masks[:-1])
    with pytest.raises(ValueError, match="NaN"):
        state.update(maps, np.full(len(scores), np.nan), labels, masks)
    with pytest.raises(ValueError, match="different"):
        AnomalyMetricState.merge([AnomalyMetricState(True), AnomalyMetricState(False)])
    with pytest.raises(ValueError, match="fpr_limit"):
        AnomalyMetricState(True, fpr_limit=0.0)
