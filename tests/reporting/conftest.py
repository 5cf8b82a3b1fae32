"""Fixtures of the sweep/report tests: a tiny MVTec folder with two categories, offline W&B settings."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def two_category_mvtec(tmp_path_factory) -> Path:
    """Tiny MVTec-format root with categories `widget` and `gadget` (64 px, planted defects)."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = tmp_path_factory.mktemp("mvtec2")
    make_synthetic_mvtec(root, category="widget", n_train=10, n_test_good=4, n_test_defect=4, size=64)
    make_synthetic_mvtec(root, category="gadget", n_train=10, n_test_good=4, n_test_defect=4, size=64, seed=1)
    return root


@pytest.fixture(scope="session")
def wandb_env(tmp_path_factory) -> dict[str, str]:
    """Offline W&B that writes nothing outside the test folders."""
    home = tmp_path_factory.mktemp("wandb_home")
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
    }
