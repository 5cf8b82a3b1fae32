"""Batch-1 deployment latency on the CPU: the PyTorch model, its TorchScript and ONNX exports.

    python benchmarks/deploy_latency.py                    # STFPM, random weights, 256 px, 50 runs each
    python benchmarks/deploy_latency.py --ckpt runs/x/checkpoints/best.ckpt --runs 100
    python benchmarks/deploy_latency.py --image-size 64 --runs 3 --warmup 1 --predict-runs 1   # smoke test

Nothing is trained for the numbers: without ``--ckpt`` the script writes a checkpoint the way the
project does (``anomaly_kd.pipeline.run``, one epoch of ``model.pretrained=false`` on 4 generated
images, so the weights are as good as random, which does not change the speed), then exports it
with ``anomaly_kd.export.export`` (the function behind ``python -m anomaly_kd.export``, with its
parity check) to TorchScript and to ONNX. Every path gets the same input, one generated
``S x S`` image (S = the checkpoint's image size) as a ``[1, 3, S, S]`` float tensor in [0, 1]:

- PyTorch: ``ExportableAnomalyModel`` (resize to S, normalise, ``anomaly_map``, resize back: the
  module the exporters trace) around the checkpoint's model, eval mode, ``torch.no_grad``;
- TorchScript: the exported file, ``torch.jit.load``, ``torch.no_grad``;
- ONNX Runtime: the exported file, ``InferenceSession`` with the CPU execution provider and default
  session options;
- predict(): ``anomaly_kd.predict.predict`` in this process on the image's PNG file, the whole
  ``python -m anomaly_kd.predict`` path without the interpreter start: load the checkpoint,
  read and resize the PNG, map and score, scores.csv + predict.json (+ the overlay PNG).

Latency = median and 90th percentile of ``--runs`` timed calls after ``--warmup`` untimed ones.
Threads: torch's default intra-op count and onnxruntime's default (``intra_op_num_threads=0``:
one thread per physical core) unless ``--threads`` sets both.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["path", "threads", "median ms", "p90 ms", "mean ms", "runs", "img/s (1 / median)", "max abs map diff vs PyTorch"]


# ------------------------------------------------------------------------------------ set-up


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def make_checkpoint(work: Path, model: str, image_size: int) -> Path:
    """A checkpoint written by the pipeline: 1 epoch on 4 generated images (+ 1 for validation)."""
    from omegaconf import open_dict

    from anomaly_kd.data.synthetic import make_synthetic_mvtec
    from anomaly_kd.pipeline import run

    data = make_synthetic_mvtec(work / "data", category="widget", n_train=5, n_test_good=1, n_test_defect=1,
                                size=image_size)  # fmt: skip
    cfg = _compose("config", [
        f"model={model}", "model.pretrained=false", "data=mvtec", "category=widget", f"paths.data_dir={data}",
        f"data.image_size={image_size}", "data.batch_size=4", "trainer=cpu", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none", "test=false",
    ])  # fmt: skip
    with open_dict(cfg):
        cfg.paths.output_dir = str(work / "run")
    with contextlib.redirect_stdout(io.StringIO()):
        results = run(cfg)
    folder = Path(results["output_dir"]) / "checkpoints"
    return folder / "best.ckpt" if (folder / "best.ckpt").is_file() else folder / "last.ckpt"


def export_both(ckpt: Path, work: Path) -> dict[str, Path]:
    from anomaly_kd.export import export

    paths = {}
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        paths[fmt] = work / "export" / f"model{suffix}"
        with contextlib.redirect_stdout(io.StringIO()):
            export(_compose("export", [f"ckpt={ckpt}", f"format={fmt}", f"output={paths[fmt]}"]))
    return paths


def input_image(work: Path, size: int) -> Path:
    """One generated S x S PNG (a plate with a planted scratch)."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = make_synthetic_mvtec(work / "input", category="one", n_train=0, n_test_good=0, n_test_defect=1,
                                size=size, seed=1)  # fmt: skip
    return next((root / "one" / "test" / "scratch").glob("*.png"))


# ------------------------------------------------------------------------------------ timing


def timed(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def row(name: str, threads: str, seconds: list[float], diff: float | None) -> dict:
    median = statistics.median(seconds)
    return {"path": name, "threads": threads, "median_ms": 1000 * median, "p90_ms": 1000 * percentile(seconds, 90),
            "mean_ms": 1000 * statistics.fmean(seconds), "runs": len(seconds), "images_per_s": 1 / median,
            "max_map_diff": diff}  # fmt: skip


def measure(ckpt: Path, paths: dict[str, Path], png: Path, args: argparse.Namespace) -> list[dict]:
    import onnxruntime as ort
    import torch

    from anomaly_kd.data.images import image_tensor, load_rgb
    from anomaly_kd.inference import ExportableAnomalyModel, load_checkpoint
    from anomaly_kd.predict import predict

    loaded = load_checkpoint(ckpt, device="cpu")
    images = image_tensor(load_rgb(png), loaded.image_size)[None].contiguous()
    torch_threads = f"torch {torch.get_num_threads()}"
    rows = []

    eager = ExportableAnomalyModel(loaded.model, loaded.image_size).eval()
    with torch.no_grad():
        reference = eager(images)[0]
        rows.append(row("PyTorch (eager, no_grad)", torch_threads, timed(lambda: eager(images), args.warmup, args.runs), 0.0))

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated.*")
        scripted = torch.jit.load(str(paths["torchscript"]), map_location="cpu")
    with torch.no_grad():
        diff = float((scripted(images)[0] - reference).abs().max())
        rows.append(row("TorchScript (torch.jit.load)", torch_threads,
                        timed(lambda: scripted(images), args.warmup, args.runs), diff))  # fmt: skip

    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: images.numpy()}
    diff = float(abs(session.run(None, feed)[0] - reference.numpy()).max())
    ort_threads = f"onnxruntime {args.threads}" if args.threads else "onnxruntime default (1 per physical core)"
    rows.append(row("ONNX Runtime (CPU EP)", ort_threads, timed(lambda: session.run(None, feed), args.warmup, args.runs), diff))

    for overlays in (False, True):
        cfg = _compose("predict", [f"ckpt={ckpt}", f"input={png}", f"output_dir={args.work / 'predict'}",
                                   "device=cpu", f"overlays={str(overlays).lower()}"])  # fmt: skip

        def call(cfg=cfg):
            with contextlib.redirect_stdout(io.StringIO()):
                predict(cfg)

        name = f"predict() in-process ({'with the overlay PNG' if overlays else 'overlays=false'})"
        rows.append(row(name, torch_threads, timed(call, min(args.warmup, 1), args.predict_runs), None))
    return rows


# ------------------------------------------------------------------------------------ report


def machine() -> str:
    import onnxruntime
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())  # fmt: skip
    mem = next((int(line.split()[1]) for line in _read("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} CPU cores (nproc), {cpu}, {mem / 2**20:.1f} GiB RAM, torch {torch.__version__} "
            f"(intra-op threads: {torch.get_num_threads()}), onnxruntime {onnxruntime.__version__}, "
            f"Python {platform.python_version()}")  # fmt: skip


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


@contextlib.contextmanager
def quiet():
    """No warnings and only the warnings of the project's and Lightning's loggers while measuring;
    restored afterwards (main() also runs inside the tests' process)."""
    levels = {"anomaly_kd": logging.WARNING, "pytorch_lightning": logging.ERROR, "lightning.pytorch": logging.ERROR}
    before = {name: logging.getLogger(name).level for name in levels}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        try:
            yield
        finally:
            for name, level in before.items():
                logging.getLogger(name).setLevel(level)


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        diff = "-" if r["max_map_diff"] is None else f"{r['max_map_diff']:.1e}"
        cells = [r["path"], r["threads"], f"{r['median_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['mean_ms']:.1f}",
                 str(r["runs"]), f"{r['images_per_s']:.1f}", diff]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="a checkpoint of `python -m anomaly_kd.run` "
                        "(default: one written here, random weights)")  # fmt: skip
    parser.add_argument("--model", default="stfpm", help="registered model for the written checkpoint")
    parser.add_argument("--image-size", type=int, default=256, help="image size of the written checkpoint")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per path")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before timing")
    parser.add_argument("--predict-runs", type=int, default=10, help="timed predict() calls (each loads the checkpoint)")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime intra-op threads (default: theirs)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the checkpoint and exports (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if min(args.runs, args.predict_runs) < 1 or args.warmup < 0 or args.image_size < 1:
        parser.error("--runs and --predict-runs must be at least 1, --warmup at least 0, --image-size positive")
    if args.ckpt is not None and not args.ckpt.is_file():
        parser.error(f"--ckpt {args.ckpt}: no such file")
    if args.work is not None:
        try:
            args.work.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            parser.error(f"--work {args.work}: {err.strerror}")
    if importlib.util.find_spec("onnxruntime") is None:
        parser.error("onnxruntime is not installed: pip install onnxruntime")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet())
        if args.work is None:
            args.work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deploy_latency_")))
        ckpt = args.ckpt.resolve() if args.ckpt else make_checkpoint(args.work, args.model, args.image_size)
        paths = export_both(ckpt, args.work)
        from anomaly_kd.inference import load_checkpoint

        loaded = load_checkpoint(ckpt, device="cpu")
        png = input_image(args.work, loaded.image_size)
        rows = measure(ckpt, paths, png, args)
    command = "python benchmarks/deploy_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    source = f"checkpoint {args.ckpt}" if args.ckpt else f"a checkpoint written here ({args.model}, random weights)"
    lines = [
        f"Command: `{command.strip()}` ({(time.perf_counter() - start) / 60:.1f} min in all).",
        "",
        f"Machine: {machine()}; 1-min load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end. "
        f"Date: {date.today().isoformat()}.",
        "",
        f"Model: {loaded.name} at {loaded.image_size} px from {source}. Input: one {loaded.image_size}x"
        f"{loaded.image_size} image, batch 1; {args.warmup} warm-up calls, then the timed ones (predict(): "
        f"{min(args.warmup, 1)} warm-up).",
        "",
        table(rows),
    ]  # fmt: skip
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
