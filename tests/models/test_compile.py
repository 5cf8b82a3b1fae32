"""model.compile=true: torch.compile of the networks gives the same maps (CPU, float32)."""

from __future__ import annotations

import pytest
import torch

from anomaly_kd.models.stfpm import STFPM


@pytest.mark.slow
def test_compiled_networks_give_the_same_maps():
    torch.manual_seed(0)
    model = STFPM(pretrained=False, layers=["layer1"]).eval()
    images = torch.rand(2, 3, 16, 16)
    maps, scores = model.anomaly_map(images)
    keys = list(model.state_dict())
    model.compile_networks()
    assert list(model.state_dict()) == keys  # checkpoints unchanged
    compiled_maps, compiled_scores = model.anomaly_map(images)
    assert model.model.teacher._compiled_call_impl is not None
    torch.testing.assert_close(compiled_maps, maps, rtol=0, atol=1e-5)
    torch.testing.assert_close(compiled_scores, scores, rtol=0, atol=1e-5)
