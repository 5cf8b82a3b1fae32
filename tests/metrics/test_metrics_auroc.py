"""Image/pixel AUROC and ROC curves against scikit-learn (the reference), ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from anomaly_kd.metrics import image_auroc, pixel_auroc, roc_curve


def _random_case(rng, n):
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[:2] = [True, False]  # both classes
    kind = rng.integers(3)
    if kind == 0:  # heavy ties
        scores = rng.integers(0, rng.integers(1, 5), n).astype(np.int64)
    elif kind == 1:
        scores = rng.standard_normal(n) + labels
    else:  # float32 with ties from rounding
        scores = np.round(rng.standard_normal(n) * 4).astype(np.float32) / 4
    return scores, labels


@pytest.mark.parametrize("seed", range(40))
def test_image_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    scores, labels = _random_case(rng, int(rng.integers(2, 300)))
    assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)


@pytest.mark.parametrize(
    "scores, labels, expected",
    [
        ([0.2, 0.8], [0, 1], 1.0),
        ([0.8, 0.2], [0, 1], 0.0),
        ([0.5, 0.5], [0, 1], 0.5),  # a tie counts one half
        ([1, 1, 2, 0], [0, 1, 1, 0], 0.875),  # pairs: (1,1) tie, 3 wins -> 3.5 / 4
    ],
)
def test_image_auroc_tiny(scores, labels, expected):
    assert image_auroc(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert roc_auc_score(labels, scores) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_pixel_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    masks = rng.random((3, 17, 19)) < 0.2
    masks[0] = False  # a normal image
    maps = rng.standard_normal(masks.shape).astype(np.float32) + masks
    if seed % 2:
        maps = np.round(maps * 2)  # many ties
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-9)
    # [N,1,H,W] tensors work the same
    assert pixel_auroc(torch.from_numpy(maps)[:, None], torch.from_numpy(masks)[:, None]) == pytest.approx(
        expected, abs=1e-9
    )


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(
            arrays(np.int64, n, elements=st.integers(-3, 3)), arrays(bool, n, elements=st.booleans())
        )
    )
)
def test_auroc_flipped_labels(case):
    scores, labels = case
    if labels.all() or not labels.any():
        return
    auc = image_auroc(scores, labels)
    assert image_auroc(scores, ~labels) == pytest.approx(1.0 - auc, abs=1e-12)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_roc_curve_matches_sklearn(seed):
    rng = np.random.default_rng(200 + seed)
    scores, labels = _random_case(rng, int(rng.integers(2, 200)))
    fpr, tpr, thr = roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert thr[0] == np.inf
    assert np.trapezoid(tpr, fpr) == pytest.approx(image_auroc(scores, labels), abs=1e-12)


def test_roc_curve_thinning_keeps_exact_points():
    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal(5000), rng.random(5000) < 0.3
    fpr, tpr, thr = roc_curve(scores, labels)
    fpr_t, tpr_t, thr_t = roc_curve(scores, labels, max_points=50)
    assert len(thr_t) <= 51
    index = {t: i for i, t in enumerate(thr)}
    for f, t, th in zip(fpr_t, tpr_t, thr_t, strict=True):
        assert (fpr[index[th]], tpr[index[th]]) == (f, t)
    assert (fpr_t[-1], tpr_t[-1]) == (1.0, 1.0)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([0.1, 0.2], [1, 1], "no normal"),
        ([0.1, 0.2], [0, 0], "no anomalous"),
        ([0.1, 0.2, 0.3], [0, 1], "shape"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, np.inf], [0, 1], "infinite"),
        ([0.1, 0.2], [0, 2], "binary"),
        ([], [], "empty"),
    ],
)
def test_image_auroc_errors(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        image_auroc(np.array(scores, dtype=float), np.array(labels))


def test_pixel_auroc_errors():
    maps = np.zeros((2, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="no anomalous"):
        pixel_auroc(maps, np.zeros(maps.shape, bool))
    with pytest.raises(ValueError, match="no normal"):
        pixel_auroc(maps, np.ones(maps.shape, bool))
    with pytest.raises(ValueError, match="shape"):
        pixel_auroc(maps, np.ones((2, 4, 5), bool))
