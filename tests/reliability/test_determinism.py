"""Same config and seed twice on CPU: identical metrics and anomaly maps; another seed differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.helpers import compose_config
from tests.helpers import all_models
from tests.reliability.reliability_helpers import base_overrides


class MapRecorder(pl.Callback):
    """Keeps every anomaly map and score of the test stage, in test order."""

    def __init__(self) -> None:
        self.maps: list[torch.Tensor] = []
        self.scores: list[torch.Tensor] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.maps.append(outputs["maps"].detach().clone())
        self.scores.append(outputs["scores"].detach().clone())


def run_recording(monkeypatch, overrides: list[str], out: Path) -> tuple[dict, torch.Tensor]:
    import anomaly_kd.pipeline as pipeline

    recorder = MapRecorder()
    build_trainer = pipeline.build_trainer

    def with_recorder(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.callbacks.append(recorder)
        return trainer

    monkeypatch.setattr(pipeline, "build_trainer", with_recorder)
    results = pipeline.run(compose_config(overrides, out))
    monkeypatch.setattr(pipeline, "build_trainer", build_trainer)
    return results, torch.cat(recorder.maps)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """6 training and 4 test images at 32 px: the test stage of the dense methods is the slow part."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    return make_synthetic_mvtec(tmp_path_factory.mktemp("determinism"), category="widget", n_train=8,
                                n_test_good=2, n_test_defect=2, size=32)


def _metrics(results: dict) -> dict:
    return {k: v for k, v in results["metrics"].items() if "seconds" not in k}


@pytest.mark.slow
@pytest.mark.parametrize("model", all_models())
def test_same_seed_twice_gives_identical_maps_and_metrics(model, small_root, tmp_path, monkeypatch):
    # two epochs for STFPM (the per-epoch seeding and order), one for the others
    epochs = 2 if model == "stfpm" else 1
    overrides = [*base_overrides(model, small_root), f"trainer.max_epochs={epochs}", "data.image_size=32"]
    first, maps_first = run_recording(monkeypatch, overrides, tmp_path / "first")
    second, maps_second = run_recording(monkeypatch, overrides, tmp_path / "second")
    assert torch.equal(maps_first, maps_second)
    assert _metrics(first) == _metrics(second)  # exactly equal, not just close
    assert (tmp_path / "first" / "scores.csv").read_text() == (tmp_path / "second" / "scores.csv").read_text()

    if model == "stfpm":  # another seed: another split, order and initialisation -> other maps
        other, maps_other = run_recording(monkeypatch, [*overrides, "seed=1"], tmp_path / "other")
        assert not torch.equal(maps_first, maps_other)
        assert _metrics(first) != _metrics(other)
        saved = json.loads((tmp_path / "other" / "results.json").read_text())
        assert saved["seed"] == 1 and saved["reproducibility"]["seed"] == 1
        assert saved["versions"]["torch"] and saved["versions"]["pytorch-lightning"]
        assert saved["reproducibility"]["torch_threads"] >= 1
        assert "command" in saved and "resumed_from" in saved


def test_train_order_depends_only_on_seed_and_epoch():
    from anomaly_kd.data.base import EpochShuffleSampler

    data = list(range(50))

    def order(seed: int, epoch: int, noise: int = 0) -> list[int]:
        sampler = EpochShuffleSampler(data, seed)
        for _ in range(noise):  # draws from its generator (worker seeds) must not matter
            torch.empty((), dtype=torch.int64).random_(generator=sampler.generator)
        sampler.set_epoch(epoch)
        torch.empty((), dtype=torch.int64).random_(generator=sampler.generator)
        return list(sampler)

    assert order(0, 3) == order(0, 3, noise=5)  # a resumed run asking for epoch 3 gets epoch 3's
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert sorted(order(0, 3)) == data

    plain = EpochShuffleSampler(data, 0)  # without set_epoch each pass is the next epoch
    assert [list(plain), list(plain)] == [order(0, 0), order(0, 1)]


def test_global_generators_depend_only_on_seed_and_epoch():
    import random

    import numpy as np

    from anomaly_kd.callbacks.seeding import seed_global_generators

    def draw(seed: int, epoch: int) -> tuple:
        torch.rand(7), np.random.rand(3), random.random()  # whatever was drawn before
        seed_global_generators(seed, epoch)
        return torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random()

    assert draw(0, 2) == draw(0, 2)
    assert draw(0, 2) != draw(0, 3) and draw(0, 2) != draw(1, 2)
