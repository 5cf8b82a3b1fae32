"""``eval_resolution=native`` end to end with every method on a generated 1024x1024 category.

    python benchmarks/native_resolution.py            # 12 train, 6 good + 6 defective test PNGs
    python benchmarks/native_resolution.py --size 128 --train 4 --test 2   # seconds (the test)

The MVTec evaluation scores maps at each ground truth's own resolution; ``eval_resolution=native``
upsamples every test map to its mask's original size before the exact metrics. This script
writes an MVTec-layout category of ``--size`` px PNGs (``make_synthetic_mvtec``, into
``benchmarks/.data/``, reused), then runs each method for one epoch with random weights at its
small model resolution (the weights do not change the metric cost) and ``eval_resolution=native``,
each job in its own process, plus STFPM at ``eval_resolution=model`` for comparison. Columns:
the job's metric time (``timing.metric_seconds`` of results.json: the exact image AUROC, pixel
AUROC, AUPRO, AP and Dice over the whole test set), its test time, and the
job's peak RSS (``os.wait4`` of that process: model, data and metric state together).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
CATEGORY = "plate"
# method -> overrides that make one epoch quick (random weights; model resolution small)
METHODS = {
    "stfpm": ["model.pretrained=false", "data.image_size=128"],
    "stfpm_ensemble": ["model.pretrained=false", "data.image_size=128", "model.n_students=2"],
    "simple_student": ["model.pretrained=false", "data.image_size=128"],
    "reverse_distillation": ["model.pretrained=false", "model.backbone=resnet18", "data.image_size=128",
                             "data.batch_size=4"],
    "uninformed_students": ["model.pretrained=false", "data.image_size=64", "model.n_students=2", "model.crop=8",
                            "model.teacher_iterations=2", "model.teacher_batch_size=8"],
}  # fmt: skip


def ensure_data(size: int, n_train: int, n_test: int, data_dir: Path = DATA) -> Path:
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    root = data_dir / f"native{size}_{n_train}_{n_test}"
    if not (root / CATEGORY / "ground_truth").is_dir():
        make_synthetic_mvtec(root, category=CATEGORY, n_train=n_train, n_test_good=n_test, n_test_defect=n_test,
                             size=size, defects=("scratch", "stain", "hole"), seed=0)  # fmt: skip
    return root


def run_job(name: str, method: str, overrides: list[str], root: Path, out: Path, resolution: str) -> dict:
    cmd = [sys.executable, "-m", "anomaly_kd.run", f"model={method}", *overrides, "data=mvtec",
           f"paths.data_dir={root}", f"category={CATEGORY}", f"eval_resolution={resolution}", "trainer=cpu",
           "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={out / name}"]  # fmt: skip
    if method == "uninformed_students":  # its teacher files go beside the runs, not into the data
        cmd.append(f"model.teacher_dir={out / 'teachers'}")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    row = {"name": name, "method": method, "resolution": resolution, "exit": proc.returncode,
           "wall_s": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024,
           "command": shlex.join(["python", *cmd[1:]])}  # fmt: skip
    results_file = out / name / "results.json"
    if proc.returncode or not results_file.exists():
        row["error"] = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        return row
    results = json.loads(results_file.read_text())
    timing, metrics = results.get("timing", {}), results.get("metrics", {})
    row.update(metric_s=timing.get("metric_seconds"), test_s=timing.get("test_seconds"),
               image_auroc=metrics.get("image_auroc"), aupro=metrics.get("aupro"))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| method | eval_resolution | metric s | test s | peak RSS MiB | job wall s | status |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        status = "ok" if "error" not in r else f"failed: {r['error']}"
        fmt = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        lines.append(f"| {r['method']} | {r['resolution']} | {fmt(r.get('metric_s'))} | {fmt(r.get('test_s'))} | "
                     f"{r['peak_rss_mib']:,.0f} | {r['wall_s']:.1f} | {status} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="side of the generated PNGs (native resolution)")
    parser.add_argument("--train", type=int, default=12)
    parser.add_argument("--test", type=int, default=6, help="good and as many defective test images")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / ".data" / "native_runs")
    parser.add_argument("--data-dir", type=Path, default=DATA, help="where the generated PNGs are written")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    root = ensure_data(args.size, args.train, args.test, args.data_dir)
    rows = [run_job(f"{m}_native", m, METHODS[m], root, args.out, "native") for m in args.methods]
    if "stfpm" in args.methods:
        rows.append(run_job("stfpm_model", "stfpm", METHODS["stfpm"], root, args.out, "model"))
    import torch

    print(f"Command: `python benchmarks/native_resolution.py {shlex.join(argv or sys.argv[1:])}` "
          f"({(time.perf_counter() - started) / 60:.1f} min in all).\n")
    print(f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}; 1-min load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end. Date: {datetime.date.today()}.\n")
    print(f"Data: {args.train} train/good, {args.test} good + {args.test} defective test PNGs of "
          f"{args.size}x{args.size} (masks at that size); one epoch per method, random weights.\n")
    print(table(rows))
    failed = [r for r in rows if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
