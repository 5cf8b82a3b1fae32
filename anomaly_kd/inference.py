"""Inference from a checkpoint alone: rebuild the trained model, and wrap it for export.

:func:`load_checkpoint` rebuilds any registered model from a ``.ckpt`` written by the pipeline: the
model name and training image size come from the ``anomaly_kd`` entry the base module adds to every
checkpoint (older checkpoints: from the run's ``results.json`` next to ``checkpoints/``), the
constructor arguments from Lightning's ``hyper_parameters``. The teacher is rebuilt with
``pretrained=False`` (and no ``weights_path``): its weights are in the checkpoint, so nothing is
downloaded or read besides the checkpoint itself. The checkpoint is read with
``torch.load(weights_only=True)`` (tensors and plain Python values only, no code execution).

:class:`ExportableAnomalyModel` is the module that :mod:`anomaly_kd.export` traces. Its contract
(also in README.md, "Export and predict"):

- input ``images``: float32 ``[B, 3, H, W]``, RGB, values in ``[0, 1]`` (NOT mean/std normalised),
  any batch size ``B`` and any ``H, W``;
- preprocessing inside: bilinear resize to the training size ``S x S`` (``align_corners=False``,
  ``antialias=False``: antialiased resizing has no ONNX/TorchScript-portable form; identity when
  ``H = W = S``), then the model's own normalisation (ImageNet or backbone mean/std);
- outputs ``anomaly_map``: float32 ``[B, 1, H, W]``, the model's map at ``S x S`` resized back to
  the input size (bilinear, ``align_corners=False``), larger = more anomalous; ``score``: float32
  ``[B]``, the model's image score computed at ``S x S`` (not from the resized map). For inputs at
  ``S x S`` both equal ``model.anomaly_map`` of the Lightning model.

For the closest match to training, feed images already resized to ``S x S`` with antialiasing (as
``anomaly_kd.data.images.image_tensor`` does, and as ``anomaly_kd.predict`` does): downscaling a
large image without antialiasing inside the graph aliases fine texture.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_kd.errors import UserError
from anomaly_kd.metrics.thresholds import finite_or_none

log = logging.getLogger(__name__)


@dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint, in eval mode, with what inference needs to know."""

    model: Any  # AnomalyModule
    name: str  # registered model name, e.g. "stfpm"
    image_size: int  # S: images are resized to S x S before the model
    trained_image_size: int | None  # the size stored with the checkpoint (None if unknown)
    image_threshold: float  # from validation normals; NaN if never validated
    pixel_threshold: float
    path: Path  # the checkpoint file
    device: torch.device
    run_dir: Path  # the run folder (parent of checkpoints/), default home of exports/predictions

    def metadata(self) -> dict[str, Any]:
        """JSON-able description (stored next to exports and predictions)."""
        return {
            "model": self.name,
            "checkpoint": str(self.path),
            "image_size": self.image_size,
            "trained_image_size": self.trained_image_size,
            "image_threshold": finite_or_none(self.image_threshold),
            "pixel_threshold": finite_or_none(self.pixel_threshold),
        }


def run_dir_of(ckpt: Path) -> Path:
    """``<run>/checkpoints/best.ckpt`` -> ``<run>``; a checkpoint elsewhere -> its own folder."""
    ckpt = Path(ckpt).resolve()
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def require_checkpoint(ckpt: str | Path | None) -> Path:
    """The checkpoint path as a file that exists, or a one-line UserError."""
    if ckpt in (None, ""):
        raise UserError("No checkpoint given: pass ckpt=/path/to/<run>/checkpoints/best.ckpt.")
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise UserError(f"Checkpoint {path} not found: pass ckpt= the path of a .ckpt file of a run.")
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt file, not a torch file, unsafe pickle, ...
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"Cannot read checkpoint {path} ({reason}): pass a .ckpt written by a run.") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict): pass a .ckpt written by a run.")
    return checkpoint


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config from the run's results.json ({} if absent or unreadable)."""
    try:
        return json.loads((run_dir / "results.json").read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def _model_class(meta: dict[str, Any], path: Path) -> tuple[str, type]:
    from anomaly_kd.models import MODEL_REGISTRY, get_model_class

    name = meta.get("model")
    if name in MODEL_REGISTRY:
        return name, get_model_class(name)
    raise UserError(
        f"Cannot tell which model wrote {path} (model {name!r}; no anomaly_kd entry in the "
        f"checkpoint and no results.json in its run folder): use a checkpoint written by "
        f"`python -m anomaly_kd.run`, one of: {', '.join(sorted(MODEL_REGISTRY))}."
    )


def _init_kwargs(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments; the teacher is not re-fetched (its weights are in the checkpoint)."""
    kwargs = dict(hparams)
    params = inspect.signature(cls.__init__).parameters
    if "pretrained" in params:
        kwargs["pretrained"] = False
    if "weights_path" in params:
        kwargs["weights_path"] = None
    return kwargs


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None): the first CUDA GPU if there is one, else the CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise UserError(f"device={name} is not a torch device: use cpu, cuda, cuda:1 or auto.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} but no CUDA GPU is available: use device=cpu.")
    return device


def check_image_size(model: Any, name: str, image_size: int) -> None:
    if image_size <= 0:
        raise UserError(f"image_size={image_size} must be a positive number of pixels.")
    multiple = int(getattr(model, "input_multiple", 1))
    if image_size % multiple:
        near = max(multiple, round(image_size / multiple) * multiple)
        raise UserError(
            f"image_size={image_size} is not divisible by {multiple}, the stride of {name}'s deepest "
            f"features: use e.g. {near}."
        )


def load_checkpoint(
    ckpt: str | Path | None, image_size: int | None = None, device: str | torch.device = "cpu"
) -> LoadedCheckpoint:
    """Rebuild the model of ``ckpt`` (eval mode, no gradients) on ``device``.

    ``image_size``: the size images are resized to before the model; default the training size
    stored with the checkpoint (the run's ``data.image_size``).
    """
    path = require_checkpoint(ckpt)
    checkpoint = _read(path)
    run_dir = run_dir_of(path)
    meta = dict(checkpoint.get("anomaly_kd") or {})
    if not meta.get("model") or meta.get("image_size") is None:
        config = _run_config(run_dir)  # checkpoints written before the anomaly_kd entry existed
        meta.setdefault("model", (config.get("model") or {}).get("name"))
        if meta.get("image_size") is None:
            meta["image_size"] = (config.get("data") or {}).get("image_size")
    name, cls = _model_class(meta, path)
    trained_size = int(meta["image_size"]) if meta.get("image_size") is not None else None
    size = int(image_size) if image_size not in (None, "") else trained_size
    if size is None:
        raise UserError(
            f"{path} does not say which image size {name} was trained at: pass image_size=<pixels>."
        )

    hparams = checkpoint.get("hyper_parameters") or {}
    try:
        model = cls(**_init_kwargs(cls, hparams))
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except UserError:
        raise
    except (TypeError, RuntimeError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise UserError(f"{path} does not fit the current {name} model ({reason}).") from None
    model.image_size = trained_size
    device = resolve_device(device)
    model.eval().requires_grad_(False).to(device)
    check_image_size(model, name, size)
    return LoadedCheckpoint(
        model=model,
        name=name,
        image_size=size,
        trained_image_size=trained_size,
        image_threshold=float(model.image_threshold),
        pixel_threshold=float(model.pixel_threshold),
        path=path.resolve(),
        device=device,
        run_dir=run_dir,
    )


class ExportableAnomalyModel(nn.Module):
    """``images [B,3,H,W] float32 in [0,1] -> (anomaly_map [B,1,H,W], score [B])``, with the
    resize to the model's ``S x S`` and the normalisation inside (see the module docstring)."""

    def __init__(self, model: nn.Module, image_size: int):
        super().__init__()
        self.model = model
        self.image_size = int(image_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = images.shape[-2], images.shape[-1]
        size = (self.image_size, self.image_size)
        x = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=False)
        maps, scores = self.model.anomaly_map(x)
        maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
        return maps, scores


__all__ = [
    "ExportableAnomalyModel",
    "LoadedCheckpoint",
    "check_image_size",
    "load_checkpoint",
    "require_checkpoint",
    "resolve_device",
    "run_dir_of",
]
