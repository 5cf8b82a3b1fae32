"""Speed and memory of the pixel metrics on a realistic test set (a benchmark, not a test).

The case (fixed seed): 1,000 anomaly maps of 256x256 float32 made of gaussian-smoothed noise; in
every other image 1-3 random ellipses form the ground-truth mask and raise the map inside them
(smoothly). It is generated once into an .npy cache under the temp folder. Each metric then runs
in a fresh subprocess that loads the arrays, calls the metric once and reports the wall time of
that call and the peak RSS of the whole process (``ru_maxrss``, which includes the loaded data:
262 MB of maps + 66 MB of bool masks). Prints a Markdown table.

    python benchmarks/metrics.py                    # anomaly_kd's aupro and pixel_auroc
    python benchmarks/metrics.py --with-reference   # + sklearn roc_auc_score and the plain
                                                    #   reference AUPRO (slow, several GB)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"aupro": "<= 2 s, <= 1.5 GB", "pixel_auroc": "<= 2 s"}


def make_case(n: int, size: int, seed: int):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    maps = np.empty((n, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        noise = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 4)
        maps[i] = noise / noise.std()
        if i % 2:
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0, size, 2)
                ry, rx = rng.uniform(4, size / 6, 2)
                angle = rng.uniform(0, np.pi)
                u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
                v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
                masks[i] |= (u / ry) ** 2 + (v / rx) ** 2 <= 1
            maps[i] += 2.5 * ndimage.gaussian_filter(masks[i].astype(np.float32), 3)
    return maps, masks


def cached_case(n: int, size: int, seed: int) -> Path:
    folder = Path(tempfile.gettempdir()) / f"anomaly_kd_metrics_bench_{n}x{size}_seed{seed}"
    if not (folder / "masks.npy").exists():
        folder.mkdir(parents=True, exist_ok=True)
        maps, masks = make_case(n, size, seed)
        np.save(folder / "maps.npy", maps)
        np.save(folder / "masks.npy", masks)
    return folder


def _load_reference_aupro():
    path = REPO / "tests" / "metrics" / "reference_pro.py"
    spec = importlib.util.spec_from_file_location("reference_pro", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_aupro


def _metric(name: str, fpr_limit: float):
    """The function of (maps, masks) that the worker times."""
    if name == "aupro":
        from anomaly_kd.metrics import aupro

        return lambda maps, masks: aupro(maps, masks, fpr_limit)
    if name == "pixel_auroc":
        from anomaly_kd.metrics import pixel_auroc

        return pixel_auroc
    if name == "reference_aupro":
        reference_aupro = _load_reference_aupro()
        return lambda maps, masks: reference_aupro(maps, masks, fpr_limit)
    if name == "sklearn_pixel_auroc":
        from sklearn.metrics import roc_auc_score

        return lambda maps, masks: roc_auc_score(masks.ravel(), maps.ravel())
    raise SystemExit(f"unknown worker {name}")


def worker(name: str, folder: Path, fpr_limit: float) -> None:
    """Runs in the subprocess: load, compute once, print one JSON line."""
    sys.path.insert(0, str(REPO))
    maps, masks = np.load(folder / "maps.npy"), np.load(folder / "masks.npy")
    fn = _metric(name, fpr_limit)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, cpu = time.perf_counter(), time.process_time()
    value = fn(maps, masks)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"value": float(value), "seconds": seconds, "cpu": cpu, "peak_mb": peak, "loaded_mb": rss_loaded}
        )
    )


def run_worker(name: str, folder: Path, fpr_limit: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--cache", str(folder), "--fpr-limit", str(fpr_limit)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {ram:.1f} GiB RAM, Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="number of maps")
    parser.add_argument("--size", type=int, default=256, help="map side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fpr-limit", type=float, default=0.3)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per metric")
    parser.add_argument(
        "--with-reference", action="store_true", help="also sklearn and the reference AUPRO (slow)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.cache, args.fpr_limit)
        return

    folder = cached_case(args.n, args.size, args.seed)
    masks = np.load(folder / "masks.npy", mmap_mode="r")
    names = ["aupro", "pixel_auroc"] + (
        ["reference_aupro", "sklearn_pixel_auroc"] if args.with_reference else []
    )
    print(
        f"Case: {args.n} maps {args.size}x{args.size} float32, {int(masks.any(axis=(1, 2)).sum())} with "
        f"masks, {masks.mean():.2%} anomalous pixels; AUPRO fpr_limit={args.fpr_limit}; {machine()}\n"
    )
    columns = ["metric", "value", "wall s (median)", "wall s (max)", "CPU s (median)", "peak RSS MB (max)"]
    columns += ["RSS before the call MB", "target"]
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    for name in names:
        runs = [run_worker(name, folder, args.fpr_limit) for _ in range(args.runs if name in TARGETS else 1)]
        seconds = [r["seconds"] for r in runs]
        print(
            f"| {name} | {runs[0]['value']:.9f} | {statistics.median(seconds):.2f} | {max(seconds):.2f} | "
            f"{statistics.median(r['cpu'] for r in runs):.2f} | {max(r['peak_mb'] for r in runs):.0f} | "
            f"{runs[0]['loaded_mb']:.0f} | {TARGETS.get(name, '')} |",
            flush=True,
        )
    print(
        f"\nLoad average (1 min) after the runs: {os.getloadavg()[0]:.2f}; median/max over {args.runs} "
        "fresh processes per metric (1 for the references)."
    )


if __name__ == "__main__":
    main()
