"""The overlay's predicted region, its outlines and its title, by construction (hand-made maps and
thresholds), and the PNG written from them."""

import numpy as np
from PIL import Image

from anomaly_kd.reporting.overlay_figure import overlay_figure, overlay_title, predicted_region, region_contours


def square_map() -> np.ndarray:
    """8 x 10 map: 0.2 everywhere, 0.9 on rows 2-4 and columns 3-5."""
    amap = np.full((8, 10), 0.2)
    amap[2:5, 3:6] = 0.9
    return amap


def test_predicted_region_is_map_at_or_above_the_threshold():
    amap = square_map()
    expected = np.zeros((8, 10), bool)
    expected[2:5, 3:6] = True
    assert np.array_equal(predicted_region(amap, 0.9), expected)  # >=: the threshold itself is anomalous
    assert np.array_equal(predicted_region(amap, 0.5), expected)
    assert not predicted_region(amap, 0.91).any()
    assert predicted_region(amap, 0.2).all()
    assert predicted_region(amap, None) is None


def test_contour_runs_exactly_around_the_known_region():
    (line,) = region_contours(predicted_region(square_map(), 0.5))
    assert np.array_equal(line[0], line[-1])  # closed
    xs, ys = line[:, 0], line[:, 1]
    # on the pixel edges: half a pixel outside columns 3-5 and rows 2-4
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (2.5, 5.5, 1.5, 4.5)
    # every point lies half-way between a pixel inside and one outside
    for x, y in line:
        assert (x % 1, y % 1) in ((0.5, 0.0), (0.0, 0.5)), (x, y)


def test_a_region_on_the_border_is_closed_along_it_and_two_regions_give_two_outlines():
    region = np.zeros((6, 6), bool)
    region[0:2, 0:2] = True
    region[4:6, 4:6] = True
    lines = region_contours(region)
    assert len(lines) == 2 and all(np.array_equal(line[0], line[-1]) for line in lines)
    boxes = sorted((line[:, 0].min(), line[:, 0].max(), line[:, 1].min(), line[:, 1].max()) for line in lines)
    assert boxes == [(-0.5, 1.5, -0.5, 1.5), (3.5, 5.5, 3.5, 5.5)]
    assert region_contours(np.zeros((4, 4), bool)) == []


def test_title_gives_score_threshold_decision_and_truth():
    assert overlay_title(0.83, 0.61, 1, "crack") == "score 0.83 / thr 0.61 -> anomalous | true: anomalous (crack)"
    assert overlay_title(0.5, 0.61, 0, "good") == "score 0.5 / thr 0.61 -> normal | true: normal"
    assert overlay_title(0.61, 0.61, 0) == "score 0.61 / thr 0.61 -> anomalous | true: normal"  # >=
    assert overlay_title(12.3456, None, 1) == "score 12.35 (no image threshold) | true: anomalous"


def test_overlay_png_is_written_and_not_blank(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 3))
    mask = np.zeros((64, 64))
    mask[20:40, 20:40] = 1
    amap = np.zeros((64, 64))
    amap[24:44, 24:44] = 1.0
    path = overlay_figure(tmp_path / "a.png", image, mask, amap, (0.0, 2.0), 0.5, overlay_title(1.0, 0.5, 1))
    with Image.open(path) as im:
        assert im.size == (4 * 192, int(1.92 * 100 + 90)) and im.mode == "RGBA"
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 10  # image, map and outlines drawn, not a blank canvas
    # both outline colours are drawn: lime (ground truth) and red (predicted)
    assert ((pixels == (0, 255, 0)).all(-1)).any() and ((pixels == (255, 0, 0)).all(-1)).any()
