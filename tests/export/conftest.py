"""Fixtures for the export/predict tests: one tiny trained checkpoint per registered model.

Every registered model whose module imports is trained once per session (1 epoch on the tiny
synthetic MVTec folder, the settings of ``run_tiny``, without the test phase) and its checkpoint is
shared by the export and predict tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.export_helpers import MODELS, Trained, compose_cli, train_tiny


@pytest.fixture(scope="session")
def trained_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export_runs")


@pytest.fixture(scope="session", params=MODELS)
def trained(request, tiny_mvtec, trained_root) -> Trained:
    """A tiny trained checkpoint of each importable registered model."""
    return train_tiny(request.param, tiny_mvtec, trained_root)


@pytest.fixture(scope="session")
def trained_stfpm(tiny_mvtec, trained_root) -> Trained:
    if "stfpm" not in MODELS:
        pytest.skip("stfpm does not import")
    return train_tiny("stfpm", tiny_mvtec, trained_root)


@pytest.fixture
def export_cfg():
    return lambda *overrides: compose_cli("export", list(overrides))


@pytest.fixture
def predict_cfg():
    return lambda *overrides: compose_cli("predict", list(overrides))
