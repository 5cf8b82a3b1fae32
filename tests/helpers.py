"""Helpers shared by the tests (importable as `tests.helpers`; pytest puts the repo on sys.path)."""

from __future__ import annotations

import csv
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Settings that make any model run in seconds on tiny data (added to the test's own overrides).
FAST = [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.image_size=64",
    "data.batch_size=4",
    "callbacks.overlays.max_images=4",
]


# Extra settings per model that keep its tiny end-to-end run to seconds on 2 CPU cores (the
# models not listed need none beyond FAST).
TINY_MODEL_OVERRIDES: dict[str, list[str]] = {
    "reverse_distillation": ["model.backbone=resnet18"],  # the Wide-ResNet-50-2 pair is ~10x slower
    "stfpm_ensemble": ["model.n_students=2"],
    "uninformed_students": [
        "data.image_size=32",
        "model.patch_sizes=[17]",  # one scale: the others run the same ops, only more of them
        "model.n_students=2",
        "model.crop=8",
        "model.teacher_iterations=2",
        "model.teacher_batch_size=8",
    ],
}


def all_models() -> list[str]:
    """Every registered model (a model that fails to import fails its tests, it is not skipped)."""
    from anomaly_kd.models import available_models

    return list(available_models())


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/ exactly as `python -m anomaly_kd.run` would, for a given output folder."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def write_scores(folder: Path, rows: list[tuple[str, int, float]]) -> Path:
    """A run's ``scores.csv`` (``path``, ``label``, ``score``) in a new ``folder``, as the benchmark scripts read it."""
    folder.mkdir(parents=True)
    path = folder / "scores.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "score"])
        writer.writerows(rows)
    return path
