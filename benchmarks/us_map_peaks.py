"""Where an Uninformed Students map peaks, and which scale and term put the peak there.

    python benchmarks/us_map_peaks.py <checkpoint> <image> [<image> ...] [--band 32]

For each image (resized as in training) prints the image score (the map's maximum, as the method
scores), where it lies (row, column; whether inside the outer ``--band`` pixels of the image), the
normalised regression error e~ and predictive variance v~ of every scale at that pixel (the map is
their average over scales, so the terms say which scale raised the score), and the maximum of the
map inside the band and inside the rest. Nothing is trained; images are read, never written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anomaly_kd.data.images import image_tensor, load_rgb  # noqa: E402
from anomaly_kd.errors import UserError, exit_on_user_error  # noqa: E402
from anomaly_kd.inference import load_checkpoint  # noqa: E402
from anomaly_kd.models.uninformed_students.anomaly_map import combine_terms, normalised_terms  # noqa: E402


def band_mask(size: int, band: int) -> torch.Tensor:
    """``[size, size]`` True within ``band`` pixels of the image's edge."""
    idx = torch.arange(size)
    edge = torch.minimum(idx, size - 1 - idx)
    return torch.minimum(edge[:, None], edge[None, :]) < band


def peaks(errors, variances, stats, band: int) -> list[dict]:
    """Per image: score, its position, every scale's terms there, and the band / inner maxima."""
    terms = normalised_terms(errors, variances, stats)  # the method's own map, from these terms
    maps = combine_terms(terms)[:, 0]
    in_band = band_mask(maps.shape[-1], band)
    out = []
    for b, m in enumerate(maps):
        y, x = divmod(int(m.flatten().argmax()), m.shape[-1])
        out.append({
            "score": float(m[y, x]), "y": y, "x": x, "in_band": bool(in_band[y, x]),
            "terms": [(float(e[b, y, x]), float(v[b, y, x])) for e, v in terms],
            "band_max": float(m[in_band].max()), "inner_max": float(m[~in_band].max()),
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--band", type=int, default=32, help="width in pixels of the border band")
    args = parser.parse_args(argv)
    return exit_on_user_error(report, args)


def report(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise UserError(f"no image file {missing[0]}: pass existing image paths.")
    loaded = load_checkpoint(args.checkpoint)
    if loaded.name != "uninformed_students":
        raise UserError(f"{args.checkpoint} is a {loaded.name} checkpoint: pass an Uninformed Students one.")
    net = loaded.model.model
    sizes = list(net.patch_sizes)
    head = ["image", "score", "peak (y, x)", f"peak in {args.band} px band"]
    head += [f"p={p} e~, v~" for p in sizes] + ["band max", "inner max"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for path in args.images:
        images = image_tensor(load_rgb(path), loaded.image_size)[None]
        errors, variances = net.raw_scores(images)
        (p,) = peaks(errors, variances, net.score_stats, args.band)
        cells = [f"{path.parent.name}/{path.name}", f"{p['score']:.2f}", f"{p['y']}, {p['x']}", "yes" if p["in_band"] else "no"]
        cells += [f"{e:.1f}, {v:.1f}" for e, v in p["terms"]] + [f"{p['band_max']:.2f}", f"{p['inner_max']:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
