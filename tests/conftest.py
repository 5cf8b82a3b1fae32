"""Shared fixtures: Hydra composition of the real config tree and tiny end-to-end runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Settings that make any model run in seconds on tiny data (added to the test's own overrides).
FAST = [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.image_size=64",
    "data.batch_size=4",
    "callbacks.overlays.max_images=4",
]


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/ exactly as `python -m anomaly_kd.run` would, for a given output folder."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def compose_cfg(tmp_path):
    def _compose(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
        return compose_config(overrides, output_dir or tmp_path / "run")

    return _compose


@pytest.fixture(scope="session")
def tiny_mvtec(tmp_path_factory) -> Path:
    """A tiny MVTec-format root with category `widget` (64 px images, planted defects)."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = tmp_path_factory.mktemp("mvtec")
    make_synthetic_mvtec(root, category="widget", n_train=10, n_test_good=4, n_test_defect=4, size=64)
    return root


@pytest.fixture
def run_tiny(tmp_path, tiny_mvtec):
    """run(cfg) for `model` on the tiny MVTec folder with fast settings; returns the results dict."""
    from anomaly_kd.pipeline import run

    def _run(model: str, *extra: str, data: str = "mvtec", category: str = "widget") -> dict:
        overrides = [
            f"model={model}",
            f"data={data}",
            f"category={category}",
            f"paths.data_dir={tiny_mvtec}",
            "logger=none",
            "model.pretrained=false",
            *FAST,
            *extra,
        ]
        return run(compose_config(overrides, tmp_path / "run"))

    return _run


@pytest.fixture(scope="session")
def shared_mnist_root() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("the real MNIST files (../shared/data/MNIST/raw) are not on this machine")
    return SHARED_DATA
