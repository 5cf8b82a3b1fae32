"""Training and test throughput (images/s) and peak memory of every registered model.

    python benchmarks/throughput.py                      # CPU, 256x256, batch 8, Markdown table
    python benchmarks/throughput.py --readme benchmarks/README.md   # also (re)writes its section
    python benchmarks/throughput.py --device cuda --precision bf16-mixed
    python benchmarks/throughput.py --models stfpm --overrides model.channels_last=false   # NCHW on the CPU

Each model (and variant, e.g. RD4AD with its ResNet-18 backbone) runs in its own subprocess, so
the peak resident memory (``ru_maxrss``) is that model's alone (it includes the ~0.3-0.5 GiB of
Python + torch). Models are built from the real config tree (``model=<name>``,
``model.pretrained=false``: weights do not change speed) by the pipeline's ``build_model``, in the
memory layout a fit on that device uses (``model.channels_last``, auto = NHWC on the CPU; networks
and input batches alike, as ``on_after_batch_transfer`` makes them; the table's "layout" column).

- train step: ``training_step`` of the LightningModule (forward + loss) + ``backward`` + the
  optimizer from its ``configure_optimizers``, on a fixed random batch;
- test step: ``anomaly_map`` under ``no_grad`` as the test loop runs it (through the base's
  ``_maps_and_scores``, which keeps maps in float32 even under bf16-mixed).

A model whose module does not import yet, or that cannot be built or stepped, is listed with a
note instead of numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = {"cpu": "## Throughput (CPU)", "cuda": "## Throughput (GPU)"}
# Extra variants benchmarked next to each registered model's defaults: (model, label, overrides).
VARIANTS = [("reverse_distillation", "resnet18", ["model.backbone=resnet18"])]


# ------------------------------------------------------------------------------------ worker


def _build(name: str, overrides: list[str], image_size: int):
    from hydra import compose, initialize_config_module

    from anomaly_kd.models import get_model_class
    from anomaly_kd.pipeline import build_model

    get_model_class(name)  # ImportError here: the method is not there yet
    overrides = [f"model={name}", "model.pretrained=false", f"data.image_size={image_size}", *overrides]
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return build_model(cfg), cfg


def _optimizer(model):
    configured = model.configure_optimizers()
    if isinstance(configured, dict):
        configured = configured["optimizer"]
    if isinstance(configured, (list, tuple)):
        configured = configured[0]
        if isinstance(configured, dict):
            configured = configured["optimizer"]
    return configured


def _batch(images):
    import torch

    b, _, h, w = images.shape
    return {
        "image": images, "label": torch.zeros(b, dtype=torch.long), "mask": torch.zeros(b, 1, h, w),
        "path": [""] * b, "mask_path": [""] * b, "defect": ["good"] * b,
    }  # fmt: skip


def _timed(step, warmup: int, steps: int, sync) -> float:
    for i in range(warmup):
        step(i)
    sync()
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync()
    return time.perf_counter() - start


def _prepare(model, images) -> None:
    """Untimed set-up that a real fit does in ``on_fit_start``: Uninformed Students regresses
    teacher descriptors normalised by their statistics over the training images (measured here
    on the benchmark's images; its teachers keep their random weights, no pretraining)."""
    import torch

    if hasattr(model, "compute_descriptor_stats"):
        with torch.no_grad():
            model.compute_descriptor_stats([_batch(images)], progress=False)


def _validation_pass(model, images) -> None:
    """One validation batch through the model's hooks, as the fit loop runs them before testing:
    methods that normalise scores with statistics of validation normals need it. Without a
    Trainer the base class cannot gather (``self.trainer`` raises), which only skips its
    thresholds, not needed for timing."""
    import torch

    with torch.no_grad():
        try:
            model.on_validation_epoch_start()
            model.validation_step(_batch(images), 0)
            model.on_validation_epoch_end()
        except Exception:  # noqa: BLE001
            pass


def worker(spec: dict) -> dict:
    import torch

    warnings.filterwarnings("ignore")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if spec["precision"] == "bf16-mixed"
        else contextlib.nullcontext
    )
    out = {"name": spec["name"], "label": spec["label"]}
    try:
        model, cfg = _build(spec["name"], spec["overrides"], spec["image_size"])
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return {**out, "note": f"not built: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    out["backbone"] = str(cfg.model.get("backbone", ""))
    model.to(device)
    from anomaly_kd.models.components.layout import channels_last_on

    nhwc = channels_last_on(cfg.model.get("channels_last", "auto"), device.type)  # as a fit on this device
    if nhwc:
        model.use_channels_last()
    out["layout"] = "channels_last" if nhwc else "NCHW"
    out["parameters"] = sum(p.numel() for p in model.parameters())
    size, bs, tbs = spec["image_size"], spec["batch_size"], spec["test_batch_size"]
    generator = torch.Generator().manual_seed(0)
    train_images = torch.rand(bs, 3, size, size, generator=generator).to(device)
    test_images = torch.rand(tbs, 3, size, size, generator=generator).to(device)
    if nhwc:  # as on_after_batch_transfer hands batches to the steps
        train_images = train_images.contiguous(memory_format=torch.channels_last)
        test_images = test_images.contiguous(memory_format=torch.channels_last)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _prepare(model, train_images)
    try:
        optimizer = _optimizer(model)
        out["trainable_parameters"] = sum(
            p.numel() for group in optimizer.param_groups for p in group["params"]
        )
        model.train()

        def train_step(i: int) -> None:
            with autocast():
                loss = model.training_step(_batch(train_images), i)
            loss = loss["loss"] if isinstance(loss, dict) else loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        seconds = _timed(train_step, spec["warmup"], spec["steps"], sync)
        out["train_images_per_s"] = spec["steps"] * bs / seconds
        if cuda:
            out["train_gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception as exc:  # noqa: BLE001
        out["note"] = f"train step failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    optimizer = None
    model.zero_grad(set_to_none=True)
    model.eval()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    _validation_pass(model, test_images)

    def test_step(i: int) -> None:
        with torch.no_grad(), autocast():
            model._maps_and_scores(test_images)

    try:
        seconds = _timed(test_step, spec["warmup"], spec["steps"], sync)
        out["test_images_per_s"] = spec["steps"] * tbs / seconds
        if cuda:
            out["test_gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception as exc:  # noqa: BLE001
        out["note"] = f"test step failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out["threads"] = torch.get_num_threads()
    return out


# ------------------------------------------------------------------------------------ driver


def jobs(selected: list[str] | None) -> list[dict]:
    from anomaly_kd.models import MODEL_REGISTRY

    names = [n for n in MODEL_REGISTRY if not selected or n in selected]
    out = []
    for name in names:
        out.append({"name": name, "label": name, "overrides": []})
        for model, label, overrides in VARIANTS:
            if model == name:
                out.append({"name": name, "label": f"{name} ({label})", "overrides": overrides})
    return out


def run_job(job: dict, args: argparse.Namespace) -> dict:
    spec = {**job, **{k: getattr(args, k) for k in ("device", "precision", "image_size", "warmup", "steps", "threads")},
            "overrides": [*job["overrides"], *args.overrides],
            "batch_size": args.batch_size, "test_batch_size": args.test_batch_size or args.batch_size}  # fmt: skip
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**job, "note": f"timed out after {args.timeout} s (build + steps)", "wall_s": args.timeout}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {**job, "note": f"worker failed (exit {proc.returncode}): {tail}"}
    result = json.loads(lines[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


def machine(args: argparse.Namespace) -> str:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) for line in _read("/proc/meminfo") if line.startswith("MemTotal")), 0)
    text = (
        f"{os.cpu_count()} CPU cores (nproc), {cpu}, {mem / 2**20:.1f} GiB RAM, "
        f"torch {torch.__version__} (intra-op threads: {torch.get_num_threads()}), Python {platform.python_version()}"
    )
    if args.device == "cuda" and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if 0 < abs(value) < 10 ** (1 - digits):  # e.g. 0.004 img/s: three significant digits, not "0.00"
        return f"{value:.3g}"
    return f"{value:,.{digits}f}"


def table(results: list[dict], args: argparse.Namespace) -> str:
    tbs = args.test_batch_size or args.batch_size
    gpu = args.device == "cuda"
    head = ["model", "backbone", "layout", "params (M)", "trained (M)", f"train img/s (batch {args.batch_size})",
            f"test img/s (batch {tbs})", "peak RSS (MiB)"] + (["peak GPU train/test (MiB)"] if gpu else []) + ["note"]  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        params = r.get("parameters")
        trained = r.get("trainable_parameters")
        cells = [
            r["label"], r.get("backbone", ""), r.get("layout", ""), _fmt(params and params / 1e6), _fmt(trained and trained / 1e6),
            _fmt(r.get("train_images_per_s"), 2), _fmt(r.get("test_images_per_s"), 2), _fmt(r.get("peak_rss_mib"), 0),
        ]  # fmt: skip
        if gpu:
            cells.append(f"{_fmt(r.get('train_gpu_peak_mib'), 0)} / {_fmt(r.get('test_gpu_peak_mib'), 0)}")
        cells.append(r.get("note", ""))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_section(path: Path, title: str, body: str) -> None:
    """Replace the ``title`` section of ``path`` (up to the next ``## ``) or append it."""
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmarks", ""]
    new = [title, "", *body.rstrip().splitlines(), ""]
    if title in lines:
        start = lines.index(title)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines += new
    path.write_text("\n".join(lines).rstrip() + "\n")


def load_note(load: float) -> str:
    """What the load average says about the numbers (the benchmark itself keeps up to the torch
    thread count busy)."""
    cores = os.cpu_count() or 1
    if load > cores + 0.5:
        return "above the core count: other processes shared the CPU and the numbers are low"
    return "no more than the benchmark's own threads: the machine was otherwise idle"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="training batch (all models)")
    parser.add_argument("--test-batch-size", type=int, default=None, help="default: --batch-size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--models", nargs="*", default=None, help="registered names (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per model (build + all steps)")
    parser.add_argument("--overrides", nargs="*", default=[], help="config overrides for every model, e.g. model.channels_last=false")
    parser.add_argument("--readme", type=Path, default=None, help="write the table into this file's section")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is visible to torch")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    results = []
    for job in jobs(args.models):
        results.append(run_job(job, args))
        print(f"{results[-1]['label']}: {results[-1].get('wall_s', 0):.0f} s", file=sys.stderr)
    total = time.perf_counter() - start
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    markdown = table(results, args)
    print(markdown)
    if args.readme:
        body = "\n".join([
            f"Command: `{command.strip()}` ({total / 60:.1f} min in all).",
            "",
            f"Machine: {machine(args)}; 1-min load average {load:.1f} at the start, {load_end:.1f} at the "
            f"end ({load_note(max(load, load_end))}). Date: {datetime.date.today().isoformat()}.",
            "",
            f"Settings: {args.image_size}x{args.image_size} inputs, random weights (`model.pretrained=false`), "
            f"precision {args.precision}, {args.warmup} warm-up + {args.steps} timed steps per phase, one "
            "subprocess per model, in the memory layout a fit on this device uses (`model.channels_last`: "
            "auto = channels_last on the CPU). Train = `training_step` + backward + the model's own optimizer step; "
            "test = `anomaly_map` under `no_grad` (float32 maps, as in the test loop). Peak RSS is the "
            "process's maximum resident memory (includes Python + torch, about 0.4 GiB).",
            "",
            markdown,
            "",
            "Models marked *timed out* did not finish building plus the warm-up and timed steps within "
            "`--timeout` seconds (e.g. Uninformed Students, whose dense training and maps cost far more "
            "per image, see its own section above); run them alone with a larger `--timeout` and a "
            "smaller batch.",
        ])  # fmt: skip
        write_section(args.readme, SECTION[args.device], body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
