"""Uninformed Students: cost of one dense student training step, dilated vs space-to-batch form.

For each receptive field p: ONE student on ONE size x size image (default 256, its zero-padded
window as in training), forward (``dense_valid``) and backward of the student loss against a
random target, timed separately, in the same process back to back (alternating, ``--repeats``
times, the fastest kept) for

- ``dilated``: ``PatchNet.dense_valid_dilated`` (dilated pools and convolutions; the form used
  before space-to-batch), and
- ``s2b``: ``PatchNet.dense_valid`` (space-to-batch: undilated layers on the stacked sub-grids).

Both start from the same weights; their outputs and weight gradients are compared (max abs
difference relative to the largest magnitude). MACs: convolutions only; the backward counts the
input and weight gradients of every convolution but the first (its input needs no gradient).
Reference rate: a plain 3x3 128 -> 128 convolution on a size x size map, forward and backward.

``--full-step`` also times a whole training step of the default model (every scale, 3 students,
the teacher's target, ``s2b`` only) at ``--threads`` threads.

    OMP_NUM_THREADS=1 python benchmarks/us_training_step.py --threads 1
    python benchmarks/us_training_step.py --sizes 256 --patch-sizes 33 --skip-dilated
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from anomaly_kd.models.uninformed_students.loss import student_loss  # noqa: E402
from anomaly_kd.models.uninformed_students.patch_net import PatchNet  # noqa: E402


def layer_macs(net: PatchNet, size: int) -> list[int]:
    """MACs of each convolution of ``dense_valid`` with a size x size output."""
    h = size + net.receptive_field - 1
    out, c_in, dilation = [], 3, 1
    for layer in net.layers:
        h -= (layer.kernel - 1) * dilation
        if layer.kind == "pool":
            dilation *= 2
            continue
        out.append(h * h * layer.kernel**2 * c_in * layer.channels)
        c_in = layer.channels
    return out


def step(net: PatchNet, method: str, window: torch.Tensor, target: torch.Tensor) -> dict:
    net.zero_grad(set_to_none=True)
    run = net.dense_valid if method == "s2b" else net.dense_valid_dilated
    start = time.perf_counter()
    out = run(window)
    forward = time.perf_counter() - start
    loss = student_loss(out, target)
    start = time.perf_counter()
    loss.backward()
    backward = time.perf_counter() - start
    grads = [p.grad.detach().clone() for p in net.parameters()]
    return {"forward": forward, "backward": backward, "out": out.detach(), "grads": grads}


def plain_conv_rate(size: int) -> tuple[float, float]:
    """GMAC/s of a 3x3 128 -> 128 convolution on a size x size output, forward and backward."""
    torch.manual_seed(0)
    x = torch.randn(1, 128, size + 2, size + 2, requires_grad=True)
    w = torch.randn(128, 128, 3, 3, requires_grad=True)
    macs = size * size * 9 * 128 * 128
    F.conv2d(x, w)  # warm-up
    start = time.perf_counter()
    y = F.conv2d(x, w)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    y.backward(torch.ones_like(y))
    backward = time.perf_counter() - start
    return macs / forward / 1e9, 2 * macs / backward / 1e9


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def full_step(size: int) -> float:
    from anomaly_kd.models.uninformed_students.torch_model import UninformedStudentsModel

    torch.manual_seed(0)
    model = UninformedStudentsModel()
    model.descriptor_mean.zero_()
    model.descriptor_std.fill_(1.0)
    images = torch.rand(1, 3, size, size)
    start = time.perf_counter()
    loss = 0.0
    for scale in range(len(model.patch_sizes)):
        target, outputs = model.training_pair(scale, images)
        loss = loss + sum(student_loss(o, target) for o in outputs)
    loss.backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternate the methods this many times, keep each one's fastest"
    )
    parser.add_argument("--skip-dilated", action="store_true", help="time only the space-to-batch form")
    parser.add_argument("--full-step", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size
    fwd_rate, bwd_rate = plain_conv_rate(size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {size} x {size} output")
    print(f"plain 3x3 128->128 conv: forward {fwd_rate:.1f} GMAC/s, backward {bwd_rate:.1f} GMAC/s\n")
    print("| p | GMAC fwd | GMAC bwd | method | forward s | GMAC/s | backward s | GMAC/s | step s |")
    print("|---|---|---|---|---|---|---|---|---|")
    methods = ["s2b"] if args.skip_dilated else ["dilated", "s2b"]
    for p in args.patch_sizes:
        torch.manual_seed(p)
        net = PatchNet(p)
        window = net.pad(net.normalize(torch.rand(1, 3, size, size)))
        target = torch.randn(1, net.descriptor_dim, size, size)
        macs = layer_macs(net, size)
        fwd_macs, bwd_macs = sum(macs), 2 * sum(macs) - macs[0]
        step(net, "s2b", window[..., : net.receptive_field + 7, : net.receptive_field + 7], target[..., :8, :8])
        results = {}
        for _ in range(args.repeats):  # back to back, alternating: both see the same machine load
            for method in methods:
                r = step(net, method, window, target)
                best = results.get(method)
                if best is None or r["forward"] + r["backward"] < best["forward"] + best["backward"]:
                    results[method] = r
        for method in methods:
            r = results[method]
            print(
                f"| {p} | {fwd_macs / 1e9:.1f} | {bwd_macs / 1e9:.1f} | {method} | {r['forward']:.2f} | "
                f"{fwd_macs / r['forward'] / 1e9:.1f} | {r['backward']:.2f} | {bwd_macs / r['backward'] / 1e9:.1f} | "
                f"{r['forward'] + r['backward']:.2f} |",
                flush=True,
            )
        if len(results) == 2:
            a, b = results["s2b"], results["dilated"]
            grad = max(rel_diff(x, y) for x, y in zip(a["grads"], b["grads"]))
            speedup = (b["forward"] + b["backward"]) / (a["forward"] + a["backward"])
            print(f"|   | p={p}: output rel. diff {rel_diff(a['out'], b['out']):.1e}, weight-gradient rel. diff "
                  f"{grad:.1e}, step speed-up {speedup:.1f}x | | | | | | | |", flush=True)  # fmt: skip
    if args.full_step:
        seconds = full_step(size)
        print(f"\nfull training step (3 scales x 3 students + teachers, s2b): {seconds:.1f} s")


if __name__ == "__main__":
    main()
