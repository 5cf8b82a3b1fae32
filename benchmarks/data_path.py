"""The data path of a fit: STFPM on a category of large PNGs with ``data.cache=none`` vs ``ram``.

    python benchmarks/data_path.py                     # 200 train + 100 test PNGs of 1024 px, 10 epochs
    python benchmarks/data_path.py --epochs 2 --num-workers 2
    python benchmarks/data_path.py --n-train 8 --n-test 2 --size 64 --image-size 64 --epochs 1   # smoke test

The category (MVTec layout, ``anomaly_kd.data.synthetic.make_synthetic_mvtec``: RGB plates with a
jittered grid of dots and pixel noise, about 1.7 MB per 1024 px PNG, decoded in ~17 ms here: a
real 900 px MVTec AD photo takes ~58 ms with its resize, so ``none`` is flattered) is written
once into ``--data-dir`` (default ``benchmarks/.data``, ignored by git) and reused by later runs
with the same sizes.

Each cache mode runs in its own subprocess: ``anomaly_kd.pipeline.run`` on the composed config
(``model=stfpm model.pretrained=false data=mvtec trainer=cpu logger=none test=false``), i.e. the
fit exactly as ``python -m anomaly_kd.run`` does it (train split + validation each epoch,
checkpoints). Measured:

- fit s: ``trainer.fit`` wall time (the pipeline's ``timing.train_seconds``); img/s = training
  images x epochs / fit s (the pipeline's ``train_images_per_second``);
- data wait / compute: a Lightning callback sums, over all training steps, the gap from the end of
  one step (``on_train_batch_end``; from ``on_train_epoch_start`` for an epoch's first step) to the
  start of the next (``on_train_batch_start``): the loader's fetch of that batch (decode + resize
  with ``none``, a copy out of memory with ``ram``; also Lightning's per-step bookkeeping, a few
  ms, and the first-epoch warm-up of its code paths); and the step itself (start -> end: forward,
  loss, backward, optimizer). Share = wait / (wait + compute). Validation is in the fit time, not
  in these sums;
- RAM cache build: ``DecodedDataset.build_cache`` timed (train and validation sets), which runs
  when Lightning makes the loaders, inside ``trainer.fit``: it is part of the fit time, and the
  table says so by checking the timestamps against the fit's ``setup``/``teardown`` hooks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATEGORY = "plates"
DEFECTS = ("scratch", "stain", "patch", "hole")


# ------------------------------------------------------------------------------------ data


def ensure_data(data_dir: Path, n_train: int, n_test: int, size: int) -> tuple[Path, float | None]:
    """The root holding the category (generated unless an earlier run left it); seconds spent
    generating, None when reused."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    spec = {"n_train": n_train, "n_test": n_test, "size": size, "version": 1}
    root = data_dir / f"{CATEGORY}_{size}px_{n_train}train_{n_test}test"
    marker = root / "spec.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return root, None
    shutil.rmtree(root, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial_", dir=data_dir))
    start = time.perf_counter()
    n_good = n_test // 2
    make_synthetic_mvtec(tmp, category=CATEGORY, n_train=n_train, n_test_good=n_good,
                         n_test_defect=n_test - n_good, size=size, defects=DEFECTS, seed=0)  # fmt: skip
    (tmp / "spec.json").write_text(json.dumps(spec))
    tmp.rename(root)  # complete or absent: an interrupted generation is redone next time
    return root, time.perf_counter() - start


def png_stats(root: Path) -> tuple[float, float]:
    """(mean PNG size in MB, median decode seconds of 5 training images) of the category."""
    from PIL import Image

    files = sorted((root / CATEGORY / "train" / "good").glob("*.png"))
    mb = sum(f.stat().st_size for f in files) / max(len(files), 1) / 1e6
    times = []
    for f in files[:5]:
        start = time.perf_counter()
        with Image.open(f) as im:
            im.convert("RGB").load()
        times.append(time.perf_counter() - start)
    return mb, sorted(times)[len(times) // 2] if times else float("nan")


# ------------------------------------------------------------------------------------ worker


def _timer_callback():
    import pytorch_lightning as pl

    class DataWaitTimer(pl.Callback):
        """Sums the loader's fetch (the gap before each training step) and the step itself."""

        def __init__(self):
            self.wait = self.compute = 0.0
            self.steps = 0
            self.fit_start = self.fit_end = None
            self._mark = self._step_start = None

        def setup(self, trainer, pl_module, stage):
            if stage == "fit":
                self.fit_start = time.perf_counter()

        def teardown(self, trainer, pl_module, stage):
            if stage == "fit":
                self.fit_end = time.perf_counter()

        def on_train_epoch_start(self, trainer, pl_module):
            self._mark = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            now = time.perf_counter()
            self.wait += now - self._mark
            self._step_start = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            self.compute += now - self._step_start
            self.steps += 1
            self._mark = now

    return DataWaitTimer()


def worker(spec: dict) -> dict:
    import torch

    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from anomaly_kd import pipeline
    from anomaly_kd.data.cache import DecodedDataset

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    builds: list[tuple[float, float, int]] = []  # (start, end, images) of each RAM cache build
    original_build = DecodedDataset.build_cache

    def timed_build(self):
        empty = self.cache_mode != "ram" or self._images is not None or len(self) == 0
        start = time.perf_counter()
        original_build(self)
        if not empty:
            builds.append((start, time.perf_counter(), len(self)))

    timer = _timer_callback()
    original_trainer = pipeline.build_trainer

    def build_trainer(*args, **kwargs):
        trainer = original_trainer(*args, **kwargs)
        trainer.callbacks.append(timer)
        return trainer

    overrides = [
        "model=stfpm", "model.pretrained=false", "data=mvtec", f"category={CATEGORY}",
        f"paths.data_dir={spec['root']}", f"data.cache={spec['cache']}", f"data.image_size={spec['image_size']}",
        f"data.num_workers={spec['num_workers']}", f"trainer.max_epochs={spec['epochs']}", "trainer=cpu",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none", "test=false",
        *([f"data.batch_size={spec['batch_size']}"] if spec.get("batch_size") else []), *spec["overrides"],
    ]  # fmt: skip
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    DecodedDataset.build_cache, pipeline.build_trainer = timed_build, build_trainer
    try:
        with tempfile.TemporaryDirectory(prefix="data_path_run_") as out:
            with open_dict(cfg):
                cfg.paths.output_dir = out
            results = pipeline.run(cfg)
    finally:  # --same-process: the next mode (and a test's later code) gets the originals back
        DecodedDataset.build_cache, pipeline.build_trainer = original_build, original_trainer
    timing = results["timing"]
    fit_s = timing["train_seconds"]
    build_s = sum(end - start for start, end, _ in builds)
    inside = [timer.fit_start <= start and end <= timer.fit_end for start, end, _ in builds]
    return {
        "cache": spec["cache"],
        "fit_s": fit_s,
        "images_per_s": timing["train_images_per_second"],
        "train_images": round(timing["train_images_per_second"] * fit_s / max(results["epochs_trained"], 1)),
        "epochs": results["epochs_trained"],
        "steps": timer.steps,
        "wait_s": timer.wait,
        "compute_s": timer.compute,
        "build_s": build_s if builds else None,
        "build_images": sum(n for *_, n in builds),
        "build_inside_fit": all(inside) if builds else None,
        "batch_size": results["config"]["data"]["batch_size"],
        "threads": torch.get_num_threads(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ------------------------------------------------------------------------------------ driver


def run_mode(cache: str, root: Path, args: argparse.Namespace) -> dict:
    spec = {"cache": cache, "root": str(root), **{k: getattr(args, k) for k in (
        "image_size", "epochs", "batch_size", "num_workers", "threads", "overrides")}}  # fmt: skip
    if args.same_process:
        return worker(spec)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300].split("UserError: ", 1)[-1]
        raise SystemExit(f"data.cache={cache}: the fit failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])


def machine(threads: int | None) -> str:
    import torch

    if threads:
        torch.set_num_threads(threads)
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())  # fmt: skip
    mem = next((int(line.split()[1]) for line in _read("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} CPU cores (nproc), {cpu}, {mem / 2**20:.1f} GiB RAM, torch {torch.__version__} "
            f"(intra-op threads: {torch.get_num_threads()}), Python {platform.python_version()}")  # fmt: skip


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


COLUMNS = ["data.cache", "fit s", "img/s", "speed-up vs none", "steps", "data wait s", "step compute s",
           "data share of step", "RAM cache build s (images)", "build inside fit",
           "data share of fit (wait + build)", "peak RSS MiB"]  # fmt: skip


def table(results: list[dict]) -> str:
    base = next((r["fit_s"] for r in results if r["cache"] == "none"), None)
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        share = r["wait_s"] / max(r["wait_s"] + r["compute_s"], 1e-12)
        build = r["build_s"] or 0.0
        cells = [
            r["cache"], f"{r['fit_s']:.2f}", f"{r['images_per_s']:.2f}",
            f"{base / r['fit_s']:.2f}x" if base else "n/a", str(r["steps"]), f"{r['wait_s']:.3f}",
            f"{r['compute_s']:.2f}", f"{100 * share:.1f}%",
            f"{r['build_s']:.2f} ({r['build_images']})" if r["build_s"] is not None else "-",
            {True: "yes", False: "no", None: "-"}[r["build_inside_fit"]],
            f"{100 * (r['wait_s'] + build) / r['fit_s']:.1f}%", f"{r['peak_rss_mib']:,.0f}",
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def verdict(results: list[dict]) -> list[str]:
    """The issue's goal for the RAM cache, when both modes ran."""
    by_mode = {r["cache"]: r for r in results}
    if not {"none", "ram"} <= set(by_mode):
        return []
    ram, none = by_mode["ram"], by_mode["none"]
    share = (ram["wait_s"] + (ram["build_s"] or 0.0)) / ram["fit_s"]
    speedup = none["fit_s"] / ram["fit_s"]
    return ["", f"Goal with data.cache=ram: data (wait + build) at most 3% of the fit: {100 * share:.1f}% "
                f"({'met' if share <= 0.03 else 'not met'}); fit at least 1.25x faster than data.cache=none: "
                f"{speedup:.2f}x ({'met' if speedup >= 1.25 else 'not met'})."]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "benchmarks" / ".data",
                        help="where the generated category is kept (default benchmarks/.data)")
    parser.add_argument("--n-train", type=int, default=200, help="train/good images (20%% go to validation)")
    parser.add_argument("--n-test", type=int, default=100, help="test images (half good, half defective)")
    parser.add_argument("--size", type=int, default=1024, help="side of the generated PNGs")
    parser.add_argument("--image-size", type=int, default=256, help="data.image_size the fit resizes to")
    parser.add_argument("--epochs", type=int, default=10, help="STFPM's recipe trains 100; 10 keeps the run near 7 min")
    parser.add_argument("--batch-size", type=int, default=None, help="data.batch_size (default: STFPM's 32)")
    parser.add_argument("--num-workers", type=int, default=0, help="data.num_workers (default 0, the project's)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--modes", nargs="+", default=["none", "ram"], choices=["none", "ram", "disk"])
    parser.add_argument("--override", dest="overrides", action="append", default=[],
                        help="extra Hydra override for the fit, e.g. --override model.backbone=resnet18 (repeatable)")
    parser.add_argument("--same-process", action="store_true",
                        help="run the fits in this process, one after the other (quicker, for tests; "
                        "the peak RSS column is then the largest so far)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    for name in ("n_train", "size", "image_size", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.n_train < 2:
        parser.error("--n-train must be at least 2 (the fit holds 20% out for validation)")
    if "disk" in args.modes:
        args.overrides.append(f"data.cache_dir={args.data_dir / '.decoded'}")
    try:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--data-dir {args.data_dir}: {err.strerror}")

    start = time.perf_counter()
    load = os.getloadavg()[0]
    root, generated = ensure_data(args.data_dir, args.n_train, args.n_test, args.size)
    if generated is not None:
        print(f"generated {args.n_train + args.n_test} PNGs of {args.size} px in {generated:.0f} s: {root}",
              file=sys.stderr)  # fmt: skip
    mb, decode_s = png_stats(root)
    if "disk" in args.modes:
        shutil.rmtree(args.data_dir / ".decoded", ignore_errors=True)  # a cold disk cache: built in the fit
    results = []
    for cache in args.modes:
        results.append(run_mode(cache, root, args))
        print(f"data.cache={cache}: fit {results[-1]['fit_s']:.1f} s", file=sys.stderr)
    load_end = os.getloadavg()[0]
    command = "python benchmarks/data_path.py " + " ".join(argv if argv is not None else sys.argv[1:])
    first = results[0]
    lines = [
        f"Command: `{command.strip()}` ({(time.perf_counter() - start) / 60:.1f} min in all"
        f"{'' if generated is None else f', of which {generated / 60:.1f} min generating the PNGs'}).",
        "",
        f"Machine: {machine(args.threads)}; 1-min load average {load:.1f} at the start, {load_end:.1f} at the end. "
        f"Date: {date.today().isoformat()}.",
        "",
        f"Data: {args.n_train} train/good ({first['train_images']} train + {args.n_train - first['train_images']} "
        f"validation) and {args.n_test} test PNGs of {args.size}x{args.size} RGB, {mb:.2f} MB each on average, "
        f"{1000 * decode_s:.0f} ms to decode one (PIL, median of 5). Fit: STFPM (random weights), "
        f"data.image_size={args.image_size}, batch {first['batch_size']}, {first['epochs']} epoch(s), "
        f"data.num_workers={args.num_workers}, {first['threads']} torch threads"
        f"{', overrides: ' + ' '.join(args.overrides) if args.overrides else ''}.",
        "",
        table(results),
        *verdict(results),
    ]  # fmt: skip
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
