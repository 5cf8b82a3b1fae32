"""Export: every registered model to TorchScript and ONNX, parity with the Lightning model,
checkpoint metadata, and the errors a user can cause."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from anomaly_kd.data.images import image_tensor, list_images, load_rgb
from anomaly_kd.errors import UserError
from anomaly_kd.export import export, run_exported
from anomaly_kd.inference import load_checkpoint
from tests.export.export_helpers import module_available

TOLERANCE = 1e-4
EXTENSIONS = {"torchscript": ".pt", "onnx": ".onnx"}


def real_images(tiny_mvtec: Path, size: int, n: int = 3) -> torch.Tensor:
    """``n`` real test images (normal and defective) at the model's size, as training reads them."""
    folder = tiny_mvtec / "widget" / "test"
    paths = (list_images(folder / "good")[:1] + list_images(folder / "scratch"))[:n]
    return torch.stack([image_tensor(load_rgb(p), size) for p in paths])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


# ------------------------------------------------------------------------------- metadata / load
@pytest.mark.slow
def test_checkpoint_stores_model_and_image_size(trained):
    checkpoint = torch.load(trained.ckpt, map_location="cpu", weights_only=True)
    meta = checkpoint["anomaly_kd"]
    assert meta["model"] == trained.name
    assert meta["image_size"] == trained.image_size
    assert meta["class_path"].startswith("anomaly_kd.models.")


@pytest.mark.slow
def test_load_checkpoint_equals_lightning_loading(trained, tiny_mvtec):
    loaded = load_checkpoint(trained.ckpt, device="cpu")
    reference = trained.lightning_model()
    assert loaded.name == trained.name and loaded.image_size == trained.image_size
    assert loaded.run_dir == trained.run_dir.resolve()
    images = real_images(tiny_mvtec, trained.image_size)
    with torch.no_grad():
        maps, scores = loaded.model.anomaly_map(images)
        ref_maps, ref_scores = reference.anomaly_map(images)
    assert torch.equal(maps, ref_maps) and torch.equal(scores, ref_scores)
    threshold = float(reference.image_threshold)
    assert loaded.image_threshold == threshold or (math.isnan(threshold) and math.isnan(loaded.image_threshold))


@pytest.mark.slow
def test_old_checkpoint_without_metadata_uses_results_json(trained_stfpm, tmp_path):
    checkpoint = torch.load(trained_stfpm.ckpt, map_location="cpu", weights_only=True)
    del checkpoint["anomaly_kd"]
    old = trained_stfpm.ckpt.parent / "old_format.ckpt"
    torch.save(checkpoint, old)
    try:
        loaded = load_checkpoint(old, device="cpu")
        assert loaded.name == "stfpm" and loaded.image_size == trained_stfpm.image_size
        elsewhere = tmp_path / "old_format.ckpt"  # no results.json next to it: nothing to go on
        old.replace(elsewhere)
        with pytest.raises(UserError, match="Cannot tell which model"):
            load_checkpoint(elsewhere, device="cpu")
    finally:
        old.unlink(missing_ok=True)


# ------------------------------------------------------------------------------- parity
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_parity(trained, fmt, export_cfg, tiny_mvtec, tmp_path):
    if fmt == "onnx" and not module_available("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    output = tmp_path / f"model{EXTENSIONS[fmt]}"
    # verify=false: this test does the comparison itself (the built-in check is tested below)
    overrides = [f"ckpt={trained.ckpt}", f"format={fmt}", f"output={output}", "batch_size=2", "verify=false"]
    meta = export(export_cfg(*overrides))
    assert output.is_file() and meta["traced_batch_size"] == 2 and meta["verification"] is None
    assert not list(tmp_path.glob(".*tmp*")), "temporary export file left behind"

    reference = trained.lightning_model()
    size = trained.image_size
    images = real_images(tiny_mvtec, size, n=3)  # batch 3: the file was traced at batch 2
    with torch.no_grad():
        ref_maps, ref_scores = reference.anomaly_map(images)
    maps, scores = run_exported(output, fmt, images)
    assert maps.shape == (3, 1, size, size) and scores.shape == (3,)
    d_maps, d_scores = max_diff(maps, ref_maps), max_diff(scores, ref_scores)
    print(f"\nPARITY {trained.name} {fmt} batch=3 size={size}: maps {d_maps:.3g} scores {d_scores:.3g}")
    assert d_maps <= TOLERANCE and d_scores <= TOLERANCE

    # Another input size: resized to S x S inside, maps resized back to the input size.
    other = F.interpolate(images[:1], size=(size + 16, size - 8), mode="bilinear", align_corners=False)
    with torch.no_grad():
        inner = F.interpolate(other, size=(size, size), mode="bilinear", align_corners=False)
        ref_maps, ref_scores = reference.anomaly_map(inner)
        ref_maps = F.interpolate(ref_maps, size=other.shape[-2:], mode="bilinear", align_corners=False)
    maps, scores = run_exported(output, fmt, other)
    assert maps.shape == (1, 1, size + 16, size - 8)
    d_maps, d_scores = max_diff(maps, ref_maps), max_diff(scores, ref_scores)
    print(f"PARITY {trained.name} {fmt} batch=1 input={size + 16}x{size - 8}: maps {d_maps:.3g} scores {d_scores:.3g}")
    assert d_maps <= TOLERANCE and d_scores <= TOLERANCE

    # Metadata: next to the file and inside it.
    sidecar = json.loads(output.with_name(output.name + ".json").read_text())
    threshold = float(reference.image_threshold)
    assert sidecar["model"] == trained.name and sidecar["image_size"] == size
    assert sidecar["image_threshold"] == (threshold if math.isfinite(threshold) else None)
    if fmt == "torchscript":
        extra = {"anomaly_kd.json": ""}
        torch.jit.load(str(output), _extra_files=extra)
        assert json.loads(extra["anomaly_kd.json"])["model"] == trained.name
    elif module_available("onnx"):
        import onnx

        props = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
        assert json.loads(props["anomaly_kd"])["image_size"] == size


@pytest.mark.slow
def test_export_default_output_and_image_size_override(trained_stfpm, export_cfg):
    meta = export(export_cfg(f"ckpt={trained_stfpm.ckpt}", "format=torchscript", "image_size=96"))
    output = trained_stfpm.run_dir / "export" / "model.pt"
    assert Path(meta["path"]) == output.resolve() and output.is_file()
    assert meta["image_size"] == 96 and meta["trained_image_size"] == trained_stfpm.image_size
    check = meta["verification"]  # the built-in check ran the file at batch_size + 1
    assert check["batch_size"] == 3 and check["max_abs_diff_maps"] <= 1e-4
    maps, scores = run_exported(output, "torchscript", torch.rand(2, 3, 40, 40))
    assert maps.shape == (2, 1, 40, 40) and scores.shape == (2,)


# ------------------------------------------------------------------------------- errors
def test_unknown_format_is_a_user_error(export_cfg, tmp_path):
    with pytest.raises(UserError, match="format=tflite is not supported"):
        export(export_cfg(f"ckpt={tmp_path / 'x.ckpt'}", "format=tflite"))


def test_missing_or_unreadable_checkpoint(export_cfg, tmp_path):
    with pytest.raises(UserError, match="No checkpoint given"):
        export(export_cfg("format=onnx"))
    with pytest.raises(UserError, match="not found"):
        export(export_cfg(f"ckpt={tmp_path / 'missing.ckpt'}", "format=onnx"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="Cannot read checkpoint"):
        export(export_cfg(f"ckpt={junk}", "format=torchscript"))


@pytest.mark.slow
def test_image_size_not_divisible_by_the_stride(trained_stfpm, export_cfg):
    with pytest.raises(UserError, match="image_size=50 is not divisible by 16"):
        export(export_cfg(f"ckpt={trained_stfpm.ckpt}", "format=torchscript", "image_size=50"))


@pytest.mark.slow
def test_exporter_failure_names_model_and_format(trained_stfpm, export_cfg, tmp_path, monkeypatch):
    import anomaly_kd.export as export_module

    def fail(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator foo\nsecond line")

    monkeypatch.setattr(export_module, "_export_onnx", fail)
    output = tmp_path / "model.onnx"
    with pytest.raises(UserError, match=r"^stfpm cannot be exported to onnx: RuntimeError: Unsupported") as info:
        export(export_cfg(f"ckpt={trained_stfpm.ckpt}", "format=onnx", f"output={output}"))
    assert "\n" not in str(info.value)
    assert not output.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_failed_verification_writes_nothing(trained_stfpm, export_cfg, tmp_path, monkeypatch):
    import anomaly_kd.export as export_module

    real = export_module.run_exported

    def off_by_a_bit(*args, **kwargs):
        maps, scores = real(*args, **kwargs)
        return maps + 1e-2, scores

    monkeypatch.setattr(export_module, "run_exported", off_by_a_bit)
    output = tmp_path / "model.pt"
    with pytest.raises(UserError, match="differs from the checkpoint's model"):
        export(export_cfg(f"ckpt={trained_stfpm.ckpt}", "format=torchscript", f"output={output}"))
    assert not list(tmp_path.iterdir())


def test_cli_error_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import anomaly_kd.export as export_module

    monkeypatch.chdir(tmp_path)
    argv = ["anomaly_kd.export", f"ckpt={tmp_path / 'missing.ckpt'}", "format=onnx",
            "hydra/job_logging=none", "hydra/hydra_logging=none"]  # leave pytest's logging alone
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        export_module.main()
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: Checkpoint") and "missing.ckpt" in last
    assert list(tmp_path.iterdir()) == []  # no outputs/, .hydra/ or log file in the working folder
