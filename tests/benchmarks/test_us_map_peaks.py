"""benchmarks/us_map_peaks.py: the peak, its terms and the band split on hand-made maps."""

from __future__ import annotations

import pytest
import torch

from tests.benchmarks.test_benchmark_scripts import load_script


def test_band_mask_marks_the_outer_pixels():
    script = load_script("us_map_peaks")
    mask = script.band_mask(6, 2)
    assert mask.sum() == 36 - 4  # the inner 2 x 2 is outside the band
    assert not mask[2:4, 2:4].any() and mask[0].all() and mask[:, 5].all()


def test_peak_position_terms_and_band_maxima_by_hand():
    script = load_script("us_map_peaks")
    e0, v0 = torch.zeros(1, 6, 6), torch.zeros(1, 6, 6)
    e1, v1 = torch.zeros(1, 6, 6), torch.zeros(1, 6, 6)
    e0[0, 3, 2] = 8.0  # scale 0's error peaks inside (row 3, column 2)
    v1[0, 0, 5] = 3.0  # scale 1's variance in the band
    stats = torch.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])  # e_mean, e_std, v_mean, v_std
    (p,) = script.peaks([e0, e1], [v0, v1], stats, band=2)
    # map = mean over scales of e~ + v~: scale 0 adds e/2, scale 1 adds v - 1
    assert (p["y"], p["x"], p["in_band"]) == (3, 2, False)
    assert p["score"] == (8.0 / 2 + 0 + 0 - 1) / 2 == 1.5
    assert p["terms"] == [(4.0, 0.0), (0.0, -1.0)]
    assert p["inner_max"] == 1.5 and p["band_max"] == (0 + 0 + 0 + 2.0) / 2


def test_a_missing_image_or_checkpoint_ends_in_one_line(tmp_path, capsys):
    script = load_script("us_map_peaks")
    image = tmp_path / "a.png"
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / "none.ckpt"), str(image)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: no image file {image}: pass existing image paths."
    image.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / "none.ckpt"), str(image)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "none.ckpt" in err
