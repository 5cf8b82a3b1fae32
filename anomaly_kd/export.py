"""``python -m anomaly_kd.export ckpt=<run>/checkpoints/best.ckpt format=torchscript|onnx``.

Writes a self-contained model ``images -> (anomaly_map, score)`` with the preprocessing inside (the
contract is in :mod:`anomaly_kd.inference` and README.md, "Export and predict"), plus
``<output>.json`` next to it (model, checkpoint, image size, the thresholds from validation
normals, input/output names, the verification numbers). The same JSON is embedded in the file
(TorchScript: extra file ``anomaly_kd.json``; ONNX: metadata property ``anomaly_kd``).

- ``torchscript``: ``torch.jit.trace`` (the models' Python control flow depends only on
  hyperparameters and buffers, which tracing turns into constants), ``torch.jit.save``.
- ``onnx``: the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``, opset 17 by
  default), with dynamic batch, height and width axes. It works for every registered model and
  needs no ``onnxscript``.

After writing, the file is loaded back (TorchScript: ``torch.jit.load``; ONNX: onnxruntime when
installed) and run on a batch whose size differs from the traced one; its maps and scores must
match the checkpoint's model within ``tolerance`` (times the map's magnitude when that exceeds 1),
otherwise nothing is written and the command fails. The file is first written under a temporary
name, so a failed export never leaves a half-written or wrong model behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from anomaly_kd.errors import UserError, exit_on_user_error
from anomaly_kd.inference import ExportableAnomalyModel, LoadedCheckpoint, load_checkpoint

log = logging.getLogger("anomaly_kd.export")

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["anomaly_map", "score"]
#: the exporters we use on purpose announce their deprecation; that is not news to the user
_QUIET = (
    r".*torch\.jit\.trace.* is deprecated.*",
    r".*legacy TorchScript-based ONNX export.*",
    r".*The feature will be removed.*",
    r".*Constant folding - Only steps=1 can be constant folded.*",
)


def validate(cfg: DictConfig) -> str:
    fmt = str(cfg.get("format") or "").lower()
    if fmt not in FORMATS:
        raise UserError(f"format={cfg.get('format')} is not supported: use format=torchscript or format=onnx.")
    opset = int(cfg.get("opset", 17))
    if fmt == "onnx" and opset < 17:
        raise UserError(f"opset={opset}: use an ONNX opset >= 17.")
    if int(cfg.get("batch_size", 2)) < 1:
        raise UserError(f"batch_size={cfg.get('batch_size')} must be >= 1.")
    return fmt


def default_output(loaded: LoadedCheckpoint, fmt: str) -> Path:
    return loaded.run_dir / "export" / f"model{FORMATS[fmt]}"


def example_images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Reproducible smooth random images in [0, 1] (low-frequency noise upsampled)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(2, size // 8), max(2, size // 8), generator=gen)
    fine = torch.rand(batch, 3, size, size, generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (0.8 * smooth + 0.2 * fine).clamp(0, 1)


class _TracingLightning:
    """Lets tracing walk a LightningModule that has no Trainer (as Lightning's to_torchscript)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.model._jit_is_scripting = True
        return self

    def __exit__(self, *exc):
        self.model.__dict__.pop("_jit_is_scripting", None)


def _collect_trace_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Tracer warnings as ``file:line: message`` (deduplicated), logged for the record."""
    notes = []
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            note = f"{Path(w.filename).name}:{w.lineno}: {str(w.message).split('.')[0]}"
            if note not in notes:
                notes.append(note)
    return notes


def _why(exc: BaseException) -> str:
    """One line: the exporter's message without its graph dump, and where in our code it failed."""
    text = " ".join(str(exc).split())
    reason = text.split(" [Caused by", 1)[0][:240] or type(exc).__name__
    where = re.findall(r"(anomaly_kd/[\w/]+\.py:\d+)", text)
    return f"{type(exc).__name__}: {reason}" + (f" (at {where[-1]})" if where else "")


def _export_torchscript(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict) -> None:
    traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"anomaly_kd.json": json.dumps(meta)})


def _export_onnx(
    wrapper: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict, opset: int
) -> None:
    dynamic = {"batch": 0, "height": 2, "width": 3}
    torch.onnx.export(
        wrapper,
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
        dynamic_axes={
            "images": {i: n for n, i in dynamic.items()},
            "anomaly_map": {i: n for n, i in dynamic.items()},
            "score": {0: "batch"},
        },
        do_constant_folding=True,
    )
    try:
        import onnx
    except ImportError:  # metadata stays in the JSON sidecar only
        return
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "anomaly_kd", json.dumps(meta)
    onnx.save(proto, str(path))


def run_exported(
    path: Path, fmt: str, images: torch.Tensor, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Maps and scores (on the CPU) of an exported file (None for ONNX without onnxruntime)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated.*")
            module = torch.jit.load(str(path), map_location=device)
        with torch.no_grad():
            maps, scores = module(images.to(device))
        return maps.cpu(), scores.cpu()
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    maps, scores = session.run(OUTPUT_NAMES, {INPUT_NAMES[0]: images.numpy()})
    return torch.from_numpy(maps), torch.from_numpy(scores)


def verify(
    loaded: LoadedCheckpoint, path: Path, fmt: str, batch: int, tolerance: float
) -> dict[str, Any] | None:
    """Compare the exported file with the checkpoint's model on ``batch`` images at S x S."""
    images = example_images(batch, loaded.image_size, seed=1)
    device = loaded.device
    exported = run_exported(path, fmt, images, device)
    if exported is None:
        log.warning("onnxruntime is not installed: the exported ONNX model was not verified.")
        return None
    with torch.no_grad():
        ref_maps, ref_scores = (t.float().cpu() for t in loaded.model.anomaly_map(images.to(device)))
    maps, scores = exported
    if maps.shape != ref_maps.shape or scores.shape != ref_scores.shape:
        raise UserError(
            f"{loaded.name} cannot be exported to {fmt}: at batch {batch} it returns shapes "
            f"{tuple(maps.shape)}, {tuple(scores.shape)} instead of {tuple(ref_maps.shape)}, {tuple(ref_scores.shape)}."
        )
    diff_maps = float((maps - ref_maps).abs().max())
    diff_scores = float((scores - ref_scores).abs().max())
    scale = max(1.0, float(ref_maps.abs().max()))
    result = {
        "batch_size": batch,
        "max_abs_diff_maps": diff_maps,
        "max_abs_diff_scores": diff_scores,
        "tolerance": tolerance * scale,
    }
    if not (diff_maps <= tolerance * scale and diff_scores <= tolerance * scale):
        raise UserError(
            f"{loaded.name} exported to {fmt} differs from the checkpoint's model at batch {batch} "
            f"(max |diff| maps {diff_maps:.3g}, scores {diff_scores:.3g} > {tolerance * scale:.3g}); "
            "nothing was written."
        )
    return result


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export the checkpoint ``cfg.ckpt``; returns the metadata written next to the file."""
    fmt = validate(cfg)
    # An ONNX file has no device: trace it on the CPU (and verify it there, against onnxruntime).
    device = "cpu" if fmt == "onnx" else str(cfg.get("device") or "cpu")
    loaded = load_checkpoint(cfg.get("ckpt"), cfg.get("image_size"), device=device)
    output = Path(str(cfg.output)).expanduser() if cfg.get("output") else default_output(loaded, fmt)
    output = output.resolve()
    if output.is_dir():
        raise UserError(f"output={output} is a folder: give a file name, e.g. {output / ('model' + FORMATS[fmt])}.")
    new_folder = not output.parent.exists()
    output.parent.mkdir(parents=True, exist_ok=True)
    batch = int(cfg.get("batch_size", 2))
    opset = int(cfg.get("opset", 17))
    meta: dict[str, Any] = {
        **loaded.metadata(),
        "format": fmt,
        "opset": opset if fmt == "onnx" else None,
        "input": {"name": INPUT_NAMES[0], "dtype": "float32", "shape": ["batch", 3, "height", "width"],
                  "range": [0.0, 1.0], "channels": "RGB", "normalised": False},
        "outputs": {"anomaly_map": ["batch", 1, "height", "width"], "score": ["batch"]},
        "preprocessing": (
            f"bilinear resize to {loaded.image_size}x{loaded.image_size} (align_corners=False, "
            "antialias=False), then the model's mean/std normalisation"
        ),
        "postprocessing": "anomaly map resized back to the input's height x width (bilinear); score at the model size",
        "is_anomalous": "score >= image_threshold",
        "traced_batch_size": batch,
    }  # fmt: skip

    wrapper = ExportableAnomalyModel(loaded.model, loaded.image_size).eval()
    example = example_images(batch, loaded.image_size).to(loaded.device)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        with warnings.catch_warnings(record=True) as caught, _TracingLightning(loaded.model), torch.no_grad():
            warnings.simplefilter("always")
            for pattern in _QUIET:
                warnings.filterwarnings("ignore", message=pattern)
            try:
                if fmt == "torchscript":
                    _export_torchscript(wrapper, example, tmp, meta)
                else:
                    _export_onnx(wrapper, example, tmp, meta, opset)
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - say which model and format, in one line
                raise UserError(f"{loaded.name} cannot be exported to {fmt}: {_why(exc)}") from exc
        notes = _collect_trace_warnings(caught)
        if notes:
            # Values read from buffers or hyperparameters (statistics, kernel sizes) become
            # constants of the graph: right for a fixed checkpoint; the check below runs the file
            # at another batch size to catch anything that would not generalise.
            log.info("Tracing turned these Python values into constants: %s", "; ".join(notes))
        meta["trace_constants"] = notes
        meta["verification"] = None
        if bool(cfg.get("verify", True)):
            meta["verification"] = verify(
                loaded, tmp, fmt, batch + 1, float(cfg.get("tolerance", 1e-4))
            )
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
        if new_folder and not output.exists() and not any(output.parent.iterdir()):
            output.parent.rmdir()  # a failed export leaves no empty export/ folder behind
    meta["path"] = str(output)
    sidecar = output.with_name(output.name + ".json")
    sidecar.write_text(json.dumps(meta, indent=2) + "\n")
    check = meta.get("verification")
    checked = (
        f"; matches the checkpoint at batch {check['batch_size']} (max |diff| maps "
        f"{check['max_abs_diff_maps']:.2g}, scores {check['max_abs_diff_scores']:.2g})"
        if check else ""
    )  # fmt: skip
    print(f"Exported {loaded.name} ({fmt}, input [B, 3, H, W] in [0, 1], model size {loaded.image_size}) "
          f"to {output}{checked}.")  # fmt: skip
    return meta


@hydra.main(version_base="1.3", config_path="pkg://anomaly_kd.conf", config_name="export")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(export, cfg)


if __name__ == "__main__":
    main()
