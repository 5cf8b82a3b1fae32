"""Helpers for the export/predict tests (importable as ``tests.export.export_helpers``)."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from tests.helpers import FAST, TINY_MODEL_OVERRIDES, all_models, compose_config

MODELS = all_models()


@dataclass
class Trained:
    name: str
    ckpt: Path
    run_dir: Path
    image_size: int
    _reference: Any = field(default=None, repr=False)

    def model_class(self):
        from anomaly_kd.models import get_model_class

        return get_model_class(self.name)

    def lightning_model(self):
        """The checkpoint loaded the plain Lightning way (independent of anomaly_kd.inference);
        loaded once, shared by the tests (they only run it in eval mode)."""
        if self._reference is None:
            cls = self.model_class()
            params = inspect.signature(cls.__init__).parameters
            kwargs = {"pretrained": False} if "pretrained" in params else {}
            self._reference = cls.load_from_checkpoint(str(self.ckpt), map_location="cpu", **kwargs).eval()
        return self._reference


_CACHE: dict[str, Trained] = {}


def train_tiny(name: str, tiny_mvtec: Path, root: Path) -> Trained:
    if name not in _CACHE:
        from anomaly_kd.pipeline import run

        overrides = [
            f"model={name}",
            "data=mvtec",
            "category=widget",
            f"paths.data_dir={tiny_mvtec}",
            "logger=none",
            "model.pretrained=false",
            "test=false",
            *FAST,
            *TINY_MODEL_OVERRIDES.get(name, []),
        ]
        cfg = compose_config(overrides, root / name)
        results = run(cfg)
        run_dir = Path(results["output_dir"])
        best = run_dir / "checkpoints" / "best.ckpt"
        ckpt = best if best.is_file() else run_dir / "checkpoints" / "last.ckpt"
        _CACHE[name] = Trained(name, ckpt, run_dir, int(cfg.data.image_size))
    return _CACHE[name]


def compose_cli(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose conf/<config_name>.yaml as `python -m anomaly_kd.<config_name>` would."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def module_available(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
