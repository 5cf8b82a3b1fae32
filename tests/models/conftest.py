"""Fixtures for the method tests (helpers in :mod:`tests.models.model_helpers`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.model_helpers import Texture


@pytest.fixture(scope="session")
def texture() -> Texture:
    from anomaly_kd.data.textures import NORMAL_FRACTION, texture_photo

    def photo(name: str) -> torch.Tensor:
        return torch.from_numpy(texture_photo(name).astype(np.float32) / 255.0)

    brick = photo("brick")
    split = round(brick.shape[0] * NORMAL_FRACTION)
    return Texture(normal=brick[:split], test=brick[split:], other=photo("grass"))
