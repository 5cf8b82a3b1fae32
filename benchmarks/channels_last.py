"""Does ``torch.channels_last`` pay for the students and teachers on this machine?

    python benchmarks/channels_last.py                      # 256 px, batch 32, 5 timed steps each
    python benchmarks/channels_last.py --size 64 --batch 2 --steps 1   # seconds (the test)

For each backbone, one STFPM training step (frozen teacher forward, student forward, STFPM loss,
backward, SGD step) and one inference pass (teacher + student, no_grad), timed with the networks
and the batch in the default contiguous (NCHW) layout and in channels_last (NHWC), in the same
process, alternating, after one warm-up step each. Random weights: the layout, not the values,
sets the speed. The last column checks that both layouts give the same loss (float round-off).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anomaly_kd.models.components.backbones import backbone_layers, create_feature_extractor  # noqa: E402
from anomaly_kd.models.stfpm.loss import stfpm_loss  # noqa: E402


def build(backbone: str, channels_last: bool):
    torch.manual_seed(0)
    layers = backbone_layers(backbone, None)
    teacher = create_feature_extractor(backbone, layers, pretrained=False, frozen=True)
    student = create_feature_extractor(backbone, layers, pretrained=False)
    if channels_last:
        teacher, student = teacher.to(memory_format=torch.channels_last), student.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.4, momentum=0.9, weight_decay=1e-4)
    return teacher, student, optimizer


def train_step(teacher, student, optimizer, images) -> float:
    with torch.no_grad():
        target = teacher(images)
    loss = stfpm_loss(target, student(images))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss)


@torch.no_grad()
def infer(teacher, student, images) -> None:
    teacher(images)
    student(images)


def measure(backbone: str, size: int, batch: int, steps: int) -> dict:
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    nets = {False: build(backbone, False), True: build(backbone, True)}
    inputs = {False: images, True: images.contiguous(memory_format=torch.channels_last)}
    times: dict[tuple[str, bool], list[float]] = {}
    first_loss = {}
    for layout in (False, True):  # warm-up (and the first step's loss, same weights and batch)
        first_loss[layout] = train_step(*nets[layout], inputs[layout])
        infer(nets[layout][0], nets[layout][1], inputs[layout])
    for _ in range(steps):
        for layout in (False, True):
            start = time.perf_counter()
            train_step(*nets[layout], inputs[layout])
            times.setdefault(("train", layout), []).append(time.perf_counter() - start)
            start = time.perf_counter()
            infer(nets[layout][0], nets[layout][1], inputs[layout])
            times.setdefault(("infer", layout), []).append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"backbone": backbone, **{f"{kind}_{'nhwc' if cl else 'nchw'}": v for (kind, cl), v in med.items()},
            "loss_diff": abs(first_loss[True] - first_loss[False]) / max(abs(first_loss[False]), 1e-12)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "efficientnet_lite0"])
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = [measure(b, args.size, args.batch, args.steps) for b in args.backbones]
    print(f"Command: `python benchmarks/channels_last.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    print(f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); 1-min load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end. Date: {datetime.date.today()}. Batch {args.batch} at "
          f"{args.size} px, median of {args.steps} steps.\n")
    print("| backbone | train step NCHW s | train step channels_last s | speed-up | inference NCHW s | "
          "inference channels_last s | speed-up | first-step loss rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['train_nchw']:.3f} | {r['train_nhwc']:.3f} | "
              f"{r['train_nchw'] / r['train_nhwc']:.2f}x | {r['infer_nchw']:.3f} | {r['infer_nhwc']:.3f} | "
              f"{r['infer_nchw'] / r['infer_nhwc']:.2f}x | {r['loss_diff']:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
