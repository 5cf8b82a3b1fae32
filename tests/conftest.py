"""Shared fixtures: Hydra composition of the real config tree and tiny end-to-end runs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers import FAST, SHARED_DATA, compose_config

# The suite runs on the CPU on every machine, as in CI: `trainer` defaults to the accelerator it
# finds, and the exact-equality tests (same seed twice, resume, DDP vs one process) assume CPU
# kernels. Set before anything asks torch about CUDA; the processes tests start inherit it.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _root_logging_as_the_test_found_it():
    """Hydra's main, called in this process by some tests (the `cli` fixture, export's main), points
    the root logger's handlers at that test's captured stderr, which is closed afterwards: a later
    test in the same process would print "--- Logging error ---". Each test gets back the handlers
    and level it started with."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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

    def _run(model: str, *extra: str, data: str = "mvtec", category: str = "widget", logger: str = "none") -> dict:
        overrides = [
            f"model={model}",
            f"data={data}",
            f"category={category}",
            f"paths.data_dir={tiny_mvtec}",
            f"logger={logger}",
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
