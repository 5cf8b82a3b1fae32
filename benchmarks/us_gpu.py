"""Uninformed Students' paper recipe on a real category on a GPU, sized to a time budget.

    python benchmarks/us_gpu.py                      # probe the GPU, then one run that fits 300 s
    python benchmarks/us_gpu.py --budget 0           # the paper recipe unchanged
    python benchmarks/us_gpu.py --device cpu --tiny  # a CPU check at tiny sizes (the test's run)

The recipe is conf/model/uninformed_students.yaml: dense training on whole 256 px images, batch 1,
3 scales x 3 students, teachers pretrained for 50,000 iterations of 64 patches, 100 epochs. First
the script measures, on the device, one teacher iteration per scale, one whole-image student step
(all scales and students, forward + backward + Adam) and one dense inference. From these it
prints the estimated time of the whole recipe and, with ``--budget`` > 0, scales the only two
counts of the recipe, ``model.teacher_iterations`` and ``trainer.max_epochs``, by one common
fraction so that the run fits the budget; everything else is the paper's. The run is one
``python -m anomaly_kd.run`` job (``benchmarks/quality.py``'s row ``us_gpu_lite0``); its folder
holds results.json and quality_row.json (the probes, the chosen counts as "reduced settings", the
device), which ``python benchmarks/quality.py --table-only`` puts into the quality table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402  (benchmarks/quality.py: rows, commands, the table)

ROW = "us_gpu_lite0"
PAPER_ITERATIONS, PAPER_EPOCHS = 50_000, 100
OVERHEAD_S = 45.0  # process start, imports, data decoding, building the model (not probed)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device, fn) -> float:
    _sync(device)
    began = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - began


def probe(device, patch_sizes: list[int], n_students: int, image_size: int, steps: int, teacher_steps: int) -> dict:
    """Seconds per teacher iteration (per patch size), per whole-image student step (all scales),
    per dense inference of one image. Random weights: speed does not depend on them."""
    import torch

    from anomaly_kd.models.uninformed_students.loss import student_loss
    from anomaly_kd.models.uninformed_students.teacher_pretraining import PretrainConfig, pretrain_teacher
    from anomaly_kd.models.uninformed_students.torch_model import UninformedStudentsModel

    teacher = {}
    for p in patch_sizes:  # the difference of two runs removes the set-up (backbone, patch source);
        # a first, untimed run takes the one-time costs (CUDA context, kernel selection)
        _, short, long = (
            _timed(device, lambda n=n: pretrain_teacher(p, PretrainConfig(iterations=n), device, progress=False))
            for n in (2, 2, 2 + teacher_steps)
        )
        teacher[p] = max(long - short, 0.0) / teacher_steps
    model = UninformedStudentsModel(patch_sizes, n_students).to(device)
    model.descriptor_mean.zero_()
    model.descriptor_std.fill_(1.0)
    optimizer = torch.optim.Adam(model.students.parameters(), lr=1e-4, weight_decay=1e-5)
    image = torch.rand(1, 3, image_size, image_size, device=device)

    def student_step() -> None:
        loss = image.new_zeros(())
        for scale in range(len(patch_sizes)):
            target, outputs = model.training_pair(scale, image, None)
            loss = loss + sum(student_loss(out, target) for out in outputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    student_step()  # warm-up (kernel selection, allocator)
    step = _timed(device, lambda: [student_step() for _ in range(steps)]) / steps
    model.raw_scores(image)
    infer = _timed(device, lambda: [model.raw_scores(image) for _ in range(steps)]) / steps
    return {"teacher_iteration_s": teacher, "student_step_s": step, "inference_s": infer}


def counts(data_dir: Path, category: str) -> tuple[int, int, int]:
    """(train, validation, test) image counts of an MVTec-layout category (the default 20% hold-out,
    split by the datamodules' own rule)."""
    from anomaly_kd.data.base import seeded_split
    from anomaly_kd.data.images import is_image_file

    root = data_dir / category
    good = sum(1 for p in (root / "train" / "good").iterdir() if is_image_file(p))
    test = sum(1 for p in (root / "test").rglob("*") if is_image_file(p))
    train, val = seeded_split(good, 0.2, 0)
    return len(train), len(val), test


def plan(probes: dict, n_train: int, n_eval: int, budget: float, min_iterations: int = 100) -> dict:
    """The recipe's estimated seconds and the counts that fit ``budget`` (0 = the recipe): both
    counts times one fraction, at least ``min_iterations`` teacher iterations and one epoch."""
    teacher = PAPER_ITERATIONS * sum(probes["teacher_iteration_s"].values())
    students = PAPER_EPOCHS * n_train * probes["student_step_s"]
    fixed = OVERHEAD_S + n_eval * probes["inference_s"]
    recipe = teacher + students + fixed
    fraction = 1.0 if budget <= 0 else min(1.0, max(budget - fixed, 0.0) / (teacher + students))
    return {"recipe_estimate_s": recipe, "teacher_s": teacher, "students_s": students, "fixed_s": fixed,
            "fraction": fraction, "teacher_iterations": max(min_iterations, int(fraction * PAPER_ITERATIONS)),
            "max_epochs": max(1, int(fraction * PAPER_EPOCHS))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the run; 0 = the paper recipe")
    parser.add_argument("--data-dir", type=Path, default=quality.DEFAULT_DATA)
    parser.add_argument("--category", default="tire")
    parser.add_argument("--out", type=Path, default=quality.OUT, help="the row's folder goes here")
    parser.add_argument("--tiny", action="store_true", help="p=17 only, 2 students, 64 px: a check, not a measurement")
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible to torch; run with --device cpu (e.g. --device cpu --tiny)",
              file=sys.stderr)  # fmt: skip
        return 2
    if not (args.data_dir / args.category).is_dir():
        print(f"error: no category folder {args.data_dir / args.category} (pass --data-dir and --category).",
              file=sys.stderr)  # fmt: skip
        return 2
    device = torch.device(args.device)
    budget = min(args.budget if args.budget > 0 else 30.0, 30.0) if args.tiny else args.budget
    sizes, students, image_size = ([17], 2, 64) if args.tiny else ([17, 33, 65], 3, 256)
    n_train, n_val, n_test = counts(args.data_dir, args.category)
    began = time.perf_counter()
    probes = probe(device, sizes, students, image_size, *((2, 5) if args.tiny else (10, 100)))
    probe_s = time.perf_counter() - began
    chosen = plan(probes, n_train, n_train + n_val + n_test, max(budget - probe_s, 1.0) if budget > 0 else 0,
                  min_iterations=5 if args.tiny else 100)  # fmt: skip
    print(json.dumps({"probes": probes, "probe_s": probe_s, **chosen}, indent=1), flush=True)

    extra = [f"model.teacher_iterations={chosen['teacher_iterations']}", f"trainer.max_epochs={chosen['max_epochs']}",
             f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.enable_progress_bar=false"]  # fmt: skip
    if args.tiny:
        extra += ["model.patch_sizes=[17]", "model.n_students=2", "data.image_size=64"]
    record = quality.run_row(ROW, args.data_dir, args.category, args.out, tuple(extra))
    reduced = {}
    if chosen["fraction"] < 1.0:
        reduced = {"model.teacher_iterations": f"{chosen['teacher_iterations']} (recipe {PAPER_ITERATIONS})",
                   "trainer.max_epochs": f"{chosen['max_epochs']} (recipe {PAPER_EPOCHS})"}  # fmt: skip
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    script = " ".join(["python benchmarks/us_gpu.py", *(argv if argv is not None else sys.argv[1:])])
    record.update(reduced=reduced, device=name, probes=probes, plan=chosen, script=script,
                  torch=torch.__version__)  # fmt: skip
    (args.out / ROW / "quality_row.json").write_text(json.dumps(record, indent=1))
    print(f"[us_gpu] exit {record['exit']}, {record['wall_seconds']:.0f} s; row folder {args.out / ROW}", flush=True)
    return record["exit"]


if __name__ == "__main__":
    sys.exit(main())
