"""GPU benchmark: STFPM, RD4AD and the STFPM ensemble at 256 px, in under 5 minutes.

    python benchmarks/gpu.py                              # the GPU torch finds (cuda:0)
    python benchmarks/gpu.py --device cpu --tiny          # tiny sizes on the CPU (the test's run)

Per model (STFPM ResNet-18, RD4AD Wide-ResNet-50-2, STFPM ensemble of 3 ResNet-18 students;
random weights, ``model.pretrained=false``: weights do not change speed) the rows are

- fit images/s at batch 32 in fp32, bf16-mixed, and bf16-mixed + ``model.compile=true``: a short
  fit through ``anomaly_kd.pipeline.run`` (the product path, teacher cache and RAM image cache on),
  timed from the start of epoch 2 to the end of the fit, so validation is included and the first
  epoch (filling the caches, compiling) is not; the first epoch's seconds are in the note;
- inference images/s at batch 64: ``model._maps_and_scores`` (the test loop's call; it keeps the
  networks in float32 whatever the trainer's precision) and ``model.anomaly_map`` under
  ``torch.autocast(bfloat16)`` (the networks in bf16);
- batch-1 latency: median of 200 timed calls (ms), fp32 and bf16 as above;
- a whole 100-epoch training of a 250-image generated category (200 train + 50 validation images,
  then the test of 100 images) with bf16-mixed and the caches, by ``pipeline.run``.

Peak memory is ``torch.cuda.max_memory_allocated`` of each row (reset before it); on the CPU the
process's peak RSS so far (``ru_maxrss``, which only grows). ``--budget`` (default 300 s) is a hard
overall limit: a row that would start after it, or a 100-epoch row whose estimate (from the bf16 fit
rate) does not fit in what is left, is skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import resource
import shlex
import signal
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from pytorch_lightning import Callback

REPO = Path(__file__).resolve().parents[1]
MODELS = {  # name -> (label, overrides at full size, overrides with --tiny, label with --tiny)
    "stfpm": ("STFPM (ResNet-18)", [], [], "STFPM (ResNet-18)"),
    "reverse_distillation": ("RD4AD (WRN50-2)", [], ["model.backbone=resnet18"], "RD4AD (tiny: ResNet-18)"),
    "stfpm_ensemble": ("STFPM ensemble (3 x ResNet-18)", [], ["model.n_students=2"], "STFPM ensemble (tiny: 2 students)"),
}
_CLOCKS: list = []  # the EpochClock callbacks that pipeline.run instantiated, newest last


class EpochClock(Callback):
    """Lightning callback (instantiated by the pipeline from ``callbacks.clock``): the start time of
    every training epoch and the end of the fit, after a device synchronisation."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.end = 0.0
        self.train_images = 0
        _CLOCKS.append(self)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        self.starts.append(time.perf_counter())
        self.train_images = len(trainer.train_dataloader.dataset)

    def on_fit_end(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        self.end = time.perf_counter()


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------ settings


def sizes(args: argparse.Namespace) -> dict:
    if args.tiny:
        return dict(image_size=64, n_train=10, n_test=2, batch=4, infer_batch=4, infer_steps=2,
                    latency_reps=5, fit_epochs=2, category_epochs=2)  # fmt: skip
    return dict(image_size=256, n_train=250, n_test=50, batch=32, infer_batch=64, infer_steps=20,
                latency_reps=200, fit_epochs=args.fit_epochs, category_epochs=args.epochs)  # fmt: skip


def compose(name: str, data_root: Path, out: Path, s: dict, args, extra: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    overrides = [
        f"model={name}", "model.pretrained=false", "data=mvtec", f"paths.data_dir={data_root}",
        "category=widget", f"data.image_size={s['image_size']}", f"data.batch_size={s['batch']}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "logger=none",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "callbacks.overlays=null", "callbacks.plots=null", "callbacks.wandb=null",
        *MODELS[name][2 if args.tiny else 1], *extra,
    ]  # fmt: skip
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.callbacks.clock = {"_target_": f"{__name__}.EpochClock"}
    return cfg


# ------------------------------------------------------------------------------------ rows


class Bench:
    def __init__(self, args: argparse.Namespace, data_root: Path, work: Path):
        import torch

        self.args, self.data_root, self.work = args, data_root, work
        self.s = sizes(args)
        self.device = torch.device("cuda" if args.device == "cuda" else "cpu")
        self.start = time.perf_counter()
        self.rows: list[dict] = []
        self.bf16_fit_rate: dict[str, float] = {}
        self.networks: dict = {}

    def label(self, model: str) -> str:
        return MODELS[model][3 if self.args.tiny else 0]

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.start)

    def _reset_peak(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def _peak_mib(self) -> float:
        import torch

        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def row(self, model: str, what: str, unit: str, measure, goal: str = "", estimate: float = 0.0) -> None:
        row = {"model": self.label(model), "what": what, "unit": unit, "goal": "" if self.args.tiny else goal}
        if self.left() <= estimate:
            row["note"] = f"skipped: {self.left():.0f} s of the --budget left" + (
                f", the estimate is {estimate:.0f} s" if estimate else "")
        else:
            self._reset_peak()
            began = time.perf_counter()
            try:
                row["value"], row["note"] = measure()
                row["peak_mib"] = self._peak_mib()
            except Exception as exc:  # noqa: BLE001 - reported in the table
                row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:140]}"
            row["seconds"] = time.perf_counter() - began
        self.rows.append(row)
        print(f"[{time.perf_counter() - self.start:6.1f} s] {row['model']}: {what}: "
              f"{_fmt(row.get('value'))} {unit} {row.get('note', '')}", file=sys.stderr, flush=True)

    def fit(self, model: str, precision: str, compiled: bool):
        from anomaly_kd.pipeline import run

        out = self.work / f"{model}-fit-{precision}-{int(compiled)}"
        cfg = compose(model, self.data_root, out, self.s, self.args, [
            f"trainer.precision={precision}", f"trainer.max_epochs={self.s['fit_epochs']}",
            "test=false", f"model.compile={str(compiled).lower()}"])  # fmt: skip
        with contextlib.redirect_stdout(sys.stderr):  # the pipeline's own results table and folder line
            run(cfg)
        clock = _CLOCKS[-1]
        steady = (clock.end - clock.starts[1]) / (len(clock.starts) - 1)
        rate = clock.train_images / steady
        if precision == "bf16-mixed" and not compiled:
            self.bf16_fit_rate[model] = rate
        return rate, f"{len(clock.starts)} epochs of {clock.train_images} images; first epoch {clock.starts[1] - clock.starts[0]:.1f} s"

    def category(self, model: str):
        from anomaly_kd.pipeline import run

        out = self.work / f"{model}-category"
        cfg = compose(model, self.data_root, out, self.s, self.args, [
            "trainer.precision=bf16-mixed", f"trainer.max_epochs={self.s['category_epochs']}"])
        began = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            results = run(cfg)
        total = time.perf_counter() - began
        metrics = results.get("metrics", {})
        auroc = metrics.get("image_auroc")
        return total, (f"fit {results['timing']['train_seconds']:.1f} s + test "
                       f"{results['timing']['test_seconds']:.1f} s; image AUROC {_fmt(auroc, 3)}")

    def _network(self, model: str):
        """One model per name for the inference and latency rows (built on first use)."""
        from anomaly_kd.pipeline import build_model

        if model not in self.networks:
            self.networks.clear()  # free the previous model's memory
            cfg = compose(model, self.data_root, self.work / "unused", self.s, self.args, [])
            self.networks[model] = build_model(cfg).to(self.device).eval()
        return self.networks[model]

    def _call(self, net, bf16: bool):
        import torch

        if bf16:
            def call(images):
                with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16):
                    return net.anomaly_map(images)
        else:
            def call(images):
                with torch.no_grad():
                    return net._maps_and_scores(images)
        return call

    def inference(self, model: str, bf16: bool):
        import torch

        net, size, batch = self._network(model), self.s["image_size"], self.s["infer_batch"]
        images = torch.rand(batch, 3, size, size, device=self.device)
        call = self._call(net, bf16)
        for _ in range(3):
            call(images)
        _sync(self.device)
        began = time.perf_counter()
        for _ in range(self.s["infer_steps"]):
            call(images)
        _sync(self.device)
        seconds = time.perf_counter() - began
        return self.s["infer_steps"] * batch / seconds, f"{self.s['infer_steps']} timed batches"

    def latency(self, model: str, bf16: bool):
        import torch

        net, size = self._network(model), self.s["image_size"]
        image = torch.rand(1, 3, size, size, device=self.device)
        call = self._call(net, bf16)
        for _ in range(10):
            call(image)
        times = []
        for _ in range(self.s["latency_reps"]):
            _sync(self.device)
            began = time.perf_counter()
            call(image)
            _sync(self.device)
            times.append((time.perf_counter() - began) * 1e3)
        return statistics.median(times), f"median of {len(times)}; min {min(times):.2f} ms"

    def model_rows(self, model: str) -> None:
        s, stfpm = self.s, model == "stfpm"
        fit = f"fit img/s (batch {s['batch']}, validation included)"
        self.row(model, f"{fit}, fp32", "img/s", lambda: self.fit(model, "32-true", False))
        self.row(model, f"{fit}, bf16-mixed", "img/s", lambda: self.fit(model, "bf16-mixed", False))
        infer = f"inference img/s (batch {s['infer_batch']})"
        self.row(model, f"{infer}, fp32 (`_maps_and_scores`)", "img/s", lambda: self.inference(model, False))
        self.row(model, f"{infer}, bf16 autocast", "img/s", lambda: self.inference(model, True),
                 ">= 2000" if stfpm else "")
        latency = f"batch-1 latency (median of {s['latency_reps']})"
        self.row(model, f"{latency}, fp32", "ms", lambda: self.latency(model, False))
        self.row(model, f"{latency}, bf16 autocast", "ms", lambda: self.latency(model, True), "<= 2" if stfpm else "")
        rate = self.bf16_fit_rate.get(model)
        images = s["n_train"] * 0.8 * s["category_epochs"] + 2 * s["n_test"] * 2
        estimate = images / rate if rate else 0.0
        self.row(model, f"{s['category_epochs']}-epoch category of {s['n_train']} images (bf16-mixed, caches), "
                 "whole run incl. test", "s", lambda: self.category(model), "<= 60" if stfpm else "", estimate)
        if self.args.no_compile:
            self.rows.append({"model": self.label(model), "what": f"{fit}, bf16-mixed + compiled", "unit": "img/s",
                              "goal": "", "note": "skipped: --no-compile"})
        else:
            self.row(model, f"{fit}, bf16-mixed + compiled", "img/s", lambda: self.fit(model, "bf16-mixed", True))


# ------------------------------------------------------------------------------------ output


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if 0 < abs(value) < 10 ** (1 - digits):
        return f"{value:.3g}"
    return f"{value:,.{digits}f}"


def machine(args: argparse.Namespace) -> str:
    import torch

    from anomaly_kd.reporting.results import cpu_name

    cpu = f"{os.cpu_count()} CPU cores ({cpu_name()})"
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        head = f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, {cpu}"
    else:
        head = f"CPU only: {cpu}, {torch.get_num_threads()} torch threads"
    return f"{head}, torch {torch.__version__}, Python {platform.python_version()}"


def table(rows: list[dict], device: str) -> str:
    memory = "peak GPU memory (MiB)" if device == "cuda" else "peak RSS so far (MiB)"
    head = ["model", "measurement", "value", "unit", memory, "goal", "row s", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        digits = 2 if r["unit"] == "ms" else 1
        cells = [r["model"], r["what"], _fmt(r.get("value"), digits), r["unit"], _fmt(r.get("peak_mib"), 0),
                 r["goal"], _fmt(r.get("seconds"), 1), r.get("note", "")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class _Stopped(BaseException):  # not an Exception: a row's own error handling must not swallow it
    """Raised by the SIGTERM handler: the table of the rows measured so far is still printed."""


def _stop(signum, frame) -> None:
    raise _Stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="64 px, 10 images, 2 epochs: a check, not a measurement")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--budget", type=float, default=300.0, help="overall seconds; later rows are skipped")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the whole-category row")
    parser.add_argument("--fit-epochs", type=int, default=3, help="epochs of each fit-rate row (>= 2)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled rows")
    parser.add_argument("--work-dir", type=Path, default=None, help="data and run folders (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.fit_epochs < 2:
        parser.error("--fit-epochs must be at least 2 (the first epoch is not timed)")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible to torch; run with --device cpu (e.g. --device cpu --tiny)",
              file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("anomaly_kd").setLevel(logging.WARNING)

    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    command = "python benchmarks/gpu.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="gpu-bench-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        bench = Bench(args, work / "data", work / "runs")
        s = bench.s
        make_synthetic_mvtec(work / "data", "widget", n_train=s["n_train"], n_test_good=s["n_test"],
                             n_test_defect=s["n_test"], size=s["image_size"],
                             defects=("patch", "scratch", "stain", "hole"))  # fmt: skip
        stopped = ""
        signal.signal(signal.SIGTERM, _stop)  # e.g. `timeout`: print the rows measured so far
        try:
            for model in args.models:
                bench.model_rows(model)
        except _Stopped:
            stopped = "; stopped by SIGTERM during the rows after the last one below"
        total = time.perf_counter() - bench.start
    print(f"Command: `{command.strip()}` ({total:.0f} s in all, budget {args.budget:.0f} s{stopped}).")
    print()
    print(f"Machine: {machine(args)}. Date: {datetime.date.today().isoformat()}.")
    print()
    print(table(bench.rows, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
