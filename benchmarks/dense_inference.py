"""Uninformed Students: dense inference vs the naive patch-by-patch loop (a benchmark, not a test).

The case: ONE size x size image (default 256), for each receptive field p in {17, 33, 65} the
teacher and M = 3 students (random weights: speed does not depend on them), computing what the
anomaly map needs (the regression error e and predictive variance v of every pixel).

- dense: ``PatchNet.dense`` (dilated form) for the teacher and each student on the whole image.
- naive: for every pixel its own p x p patch (zero-padded image) through the patch networks, in
  batches of ``--naive-batch`` patches. Looping over all 65,536 pixels takes hours on a CPU, so
  the loop is timed on ``--naive-pixels`` seeded random pixels and EXTRAPOLATED linearly to the
  whole image (its cost is the same for every pixel).

Multiply-accumulates (convolutions only) per scale: naive = (M + 1) x MACs(one patch) x H x W,
dense = (M + 1) x MACs(every layer once per position of the zero-padded image). Their ratio is
the ideal speed-up; the benchmark checks that the measured speed-up reaches half of it.

Each measurement runs in a fresh subprocess; it reports its wall time (minimum over
``--repeats``), the process's peak RSS and the peak growth over what the process held before
the timed work (``ru_maxrss``), or on CUDA the peak of ``torch.cuda.max_memory_allocated``.
``dense_all`` is the whole multi-scale anomaly map (all scales, normalisation, sum) in one call.

    python benchmarks/dense_inference.py                      # CPU, 256 px, prints a Markdown table
    python benchmarks/dense_inference.py --device cuda        # on a GPU
    python benchmarks/dense_inference.py --json out.json      # also write the numbers
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------------------------ worker


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _nets(p: int, students: int, device):
    import torch

    from anomaly_kd.models.uninformed_students.patch_net import PatchNet

    torch.manual_seed(p)
    return [PatchNet(p).eval().to(device) for _ in range(students + 1)]


def _dense_e_v(nets, image):
    """Teacher = nets[0]; returns e and v maps [1, H, W] (descriptor stats: identity)."""
    import torch

    from anomaly_kd.models.uninformed_students.anomaly_map import predictive_variance, regression_error

    target = nets[0].dense(image)
    outputs = torch.stack([net.dense(image) for net in nets[1:]])
    return regression_error(outputs, target), predictive_variance(outputs)


def _naive_e_v(nets, image, pixels, batch: int):
    """The patch network on the centred patch of each pixel in ``pixels`` ([K, 2] rows, cols)."""
    import torch
    import torch.nn.functional as F

    from anomaly_kd.models.uninformed_students.anomaly_map import predictive_variance, regression_error

    p = nets[0].patch_size
    half = (p - 1) // 2
    padded = F.pad(nets[0].normalize(image), (half, half, half, half))[0]
    errors, variances = [], []
    for chunk in pixels.split(batch):
        patches = torch.stack([padded[:, r : r + p, c : c + p] for r, c in chunk.tolist()])
        target = nets[0](patches)
        outputs = torch.stack([net(patches) for net in nets[1:]])
        errors.append(regression_error(outputs[..., None, None], target[..., None, None]).flatten())
        variances.append(predictive_variance(outputs[..., None, None]).flatten())
    return torch.cat(errors), torch.cat(variances)


def _memory_mark(device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_peak(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(spec: dict) -> dict:
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    size, students, repeats = spec["size"], spec["students"], spec["repeats"]
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    out: dict = {"kind": spec["kind"], "p": spec.get("p")}
    with torch.no_grad():
        if spec["kind"] == "dense_all":
            from anomaly_kd.models.uninformed_students.torch_model import UninformedStudentsModel

            model = UninformedStudentsModel(spec["patch_sizes"], students).eval().to(device)
            model.descriptor_mean.zero_()
            model.descriptor_std.fill_(1.0)
            model.score_stats.copy_(torch.tensor([[0.0, 1.0, 0.0, 1.0]]).expand_as(model.score_stats))
            run = lambda: model.anomaly_map(image)  # noqa: E731
        else:
            nets = _nets(spec["p"], students, device)
            if spec["kind"] == "dense":
                run = lambda: _dense_e_v(nets, image)  # noqa: E731
            else:
                gen = torch.Generator().manual_seed(1)
                pixels = torch.randint(0, size, (spec["naive_pixels"], 2), generator=gen)
                _naive_e_v(nets, image, pixels[: spec["naive_batch"]], spec["naive_batch"])  # warm-up
                run = lambda: _naive_e_v(nets, image, pixels, spec["naive_batch"])  # noqa: E731
        before = _memory_mark(device)
        times, cpu_times = [], []
        for _ in range(repeats):
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            result = run()
            _sync(device)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        peak = _memory_peak(device)
        if spec["kind"] == "dense":  # the two forms compute the same numbers
            pixels = torch.randint(0, size, (8, 2), generator=torch.Generator().manual_seed(2))
            e_naive, v_naive = _naive_e_v(nets, image, pixels, 8)
            e, v = result
            rows, cols = pixels[:, 0], pixels[:, 1]
            out["max_abs_diff_e_v"] = max(
                float((e[0, rows, cols].cpu() - e_naive.cpu()).abs().max()),
                float((v[0, rows, cols].cpu() - v_naive.cpu()).abs().max()),
            )
    out["seconds"] = min(times)
    out["cpu_seconds"] = min(cpu_times)  # all threads of this process
    out["peak_mb"] = peak
    out["peak_growth_mb"] = peak - before if device.type == "cpu" else peak
    if spec["kind"] == "naive":
        scale = size * size / spec["naive_pixels"]
        out["seconds_measured"], out["cpu_seconds_measured"] = out["seconds"], out["cpu_seconds"]
        out["seconds"], out["cpu_seconds"] = out["seconds"] * scale, out["cpu_seconds"] * scale
    return out


# ------------------------------------------------------------------------------------ driver


def run_worker(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {spec['kind']} p={spec.get('p')} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mac_counts(patch_sizes, students: int, size: int) -> dict[int, tuple[int, int]]:
    from anomaly_kd.models.uninformed_students.patch_net import PatchNet

    counts = {}
    for p in patch_sizes:
        net = PatchNet(p)
        nets = students + 1
        counts[p] = (nets * net.macs_per_patch() * size * size, nets * net.macs_dense(size, size))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--naive-pixels", type=int, default=128, help="pixels timed in the naive loop")
    parser.add_argument("--naive-batch", type=int, default=64, help="patches per batch in the naive loop")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (minimum kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-all", action="store_true", help="skip the whole-map dense_all run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    base = dict(
        size=args.size, students=args.students, device=args.device, repeats=args.repeats,
        threads=args.threads, naive_pixels=args.naive_pixels, naive_batch=args.naive_batch,
        patch_sizes=args.patch_sizes,
    )  # fmt: skip
    macs = mac_counts(args.patch_sizes, args.students, args.size)
    rows = []
    for p in args.patch_sizes:
        dense = run_worker({**base, "kind": "dense", "p": p})
        naive = run_worker({**base, "kind": "naive", "p": p})
        mac_ratio = macs[p][0] / macs[p][1]
        speedup = naive["seconds"] / dense["seconds"]
        cpu_speedup = naive["cpu_seconds"] / dense["cpu_seconds"]
        rows.append({
            "p": p, "macs_naive": macs[p][0], "macs_dense": macs[p][1], "mac_ratio": mac_ratio,
            "dense": dense, "naive": naive, "speedup": speedup, "cpu_speedup": cpu_speedup,
            "speedup_over_mac_ratio": speedup / mac_ratio, "passes": speedup >= 0.5 * mac_ratio,
        })  # fmt: skip
    whole = None if args.skip_all else run_worker({**base, "kind": "dense_all"})
    on_gpu = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name(args.device) if on_gpu else platform.processor() or platform.machine()
    header = {
        "device": args.device, "device_name": device_name, "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(), "size": args.size, "students": args.students,
        "naive_pixels": args.naive_pixels, "naive_batch": args.naive_batch, "repeats": args.repeats,
    }  # fmt: skip
    print(markdown(header, rows, whole))
    if args.json:
        args.json.write_text(json.dumps({"setup": header, "scales": rows, "dense_all": whole}, indent=2))
    return 0 if all(r["passes"] for r in rows) else 1


def markdown(header: dict, rows: list[dict], whole: dict | None) -> str:
    mem = "peak GPU alloc MB" if header["device"].startswith("cuda") else "peak RSS MB (growth)"
    lines = [
        f"{header['size']}x{header['size']} image, teacher + {header['students']} students per scale, "
        f"device {header['device']} ({header['device_name']}), torch {header['torch']}, "
        f"{header['threads']} threads; naive loop timed on {header['naive_pixels']} pixels "
        f"(batches of {header['naive_batch']} patches) and extrapolated to all pixels.",
        "",
        f"| p | GMAC naive | GMAC dense | MAC ratio | naive s (extrap.) | dense s | speed-up | "
        f"speed-up / MAC ratio | >= 0.5 | CPU-time speed-up | {mem} naive | {mem} dense |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, n = r["dense"], r["naive"]
        lines.append(
            f"| {r['p']} | {r['macs_naive'] / 1e9:,.0f} | {r['macs_dense'] / 1e9:,.1f} | {r['mac_ratio']:.1f} | "
            f"{n['seconds']:,.0f} | {d['seconds']:.2f} | {r['speedup']:.1f} | {r['speedup_over_mac_ratio']:.2f} | "
            f"{'yes' if r['passes'] else 'NO'} | {r['cpu_speedup']:.1f} | {_mem(n)} | {_mem(d)} |"
        )
    if whole:
        lines += ["", f"Whole multi-scale anomaly map (dense, all scales, one call): {whole['seconds']:.2f} s "
                  f"({whole['cpu_seconds']:.1f} CPU s), peak {_mem(whole)} MB."]  # fmt: skip
    diffs = [r["dense"].get("max_abs_diff_e_v") for r in rows]
    lines.append(f"Check: dense vs naive e/v on 8 pixels per scale, max abs difference {max(diffs):.2e}.")
    return "\n".join(lines)


def _mem(m: dict) -> str:
    return f"{m['peak_mb']:,.0f} ({m['peak_growth_mb']:,.0f})"


if __name__ == "__main__":
    sys.exit(main())
