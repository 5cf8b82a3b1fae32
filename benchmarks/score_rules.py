"""Choose an image-score rule without test labels: synthetic defects on validation normals.

    python benchmarks/score_rules.py benchmarks/.quality/<row> [<row folder> ...]
    python benchmarks/score_rules.py RUN --rules model,blur2,blur4,blur8 --window 0.25

For each trained run folder (its checkpoints and ``results.json``, as
``benchmarks/quality.py`` writes them) this rebuilds the run's own validation hold-out from its
config, draws one synthetic defect into a copy of each validation normal
(:class:`anomaly_kd.data.defect_copies.DefectCopies`: small defects in a ``--window`` square,
exact masks), and scores normals and copies with the checkpoint the run tested. Each image-score rule
(:mod:`anomaly_kd.models.components.image_score`: the method's own, the map's maximum, the maximum
after Gaussian smoothing) gets its image AUROC on that synthetic validation set; **the rule with
the highest one is chosen** (ties: the earlier rule in ``--rules``, so the method's own first).
Only then is the test set scored, under every rule, so the chosen rule's test numbers can be read
beside the others'. No test label enters the choice; the test numbers of the rules not chosen are
shown for information and labelled so.

The maps themselves are the same under every rule, so pixel AUROC and AUPRO are one number per run
(on the synthetic validation set and on test; at the model's resolution, as ``eval_resolution=model``).
Test images go through the run's own test loader, batched as the run batched them. Writes ``score_rules.json`` into each run folder
and prints one Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import ConcatDataset, DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anomaly_kd.data.defect_copies import DefectCopies  # noqa: E402
from anomaly_kd.errors import UserError, exit_on_user_error  # noqa: E402
from anomaly_kd.inference import load_checkpoint  # noqa: E402
from anomaly_kd.metrics import AnomalyMetricState, image_ap, image_auroc  # noqa: E402
from anomaly_kd.models.components.image_score import blur_sigma, rescore  # noqa: E402
from anomaly_kd.models.components.layout import channels_last_on  # noqa: E402
from anomaly_kd.trainer_setup import build_datamodule  # noqa: E402

DEFAULT_RULES = ("model", "blur2", "blur4", "blur8")


def score_set(model, loader: DataLoader) -> dict[str, torch.Tensor]:
    """Maps ``[N, 1, S, S]``, the method's scores ``[N]``, labels and masks of ``loader``'s items
    (in order; batches as the run's evaluation batches them, so the numbers are the run's own)."""
    maps, scores, labels, masks = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            images = model.on_after_batch_transfer({"image": batch["image"].to(model.device)}, 0)["image"]
            m, s = model._maps_and_scores(images)  # as the run's test step: float, layout of the run
            maps.append(m.cpu()), scores.append(s.cpu())
            labels.append(torch.as_tensor(batch["label"])), masks.append(batch["mask"].float())
    return {"maps": torch.cat(maps), "scores": torch.cat(scores), "labels": torch.cat(labels), "masks": torch.cat(masks)}


def pixel_metrics(scored: dict[str, torch.Tensor], fpr_limit: float) -> dict[str, float | None]:
    state = AnomalyMetricState(has_masks=True, fpr_limit=fpr_limit)
    state.update(scored["maps"], scored["scores"], scored["labels"], scored["masks"])
    result = state.compute()
    return {"pixel_auroc": result["pixel_auroc"], "aupro": result["aupro"]}


def rule_metrics(scored: dict[str, torch.Tensor], rules: tuple[str, ...]) -> dict[str, dict[str, float]]:
    labels = scored["labels"].numpy()
    out = {}
    for rule in rules:
        s = rescore(scored["maps"], scored["scores"], rule).numpy().astype(np.float64)
        out[rule] = {"image_auroc": float(image_auroc(s, labels)), "image_ap": float(image_ap(s, labels))}
    return out


def choose(val: dict[str, dict[str, float]], rules: tuple[str, ...]) -> str:
    """The rule with the highest synthetic-validation image AUROC; ties go to the earlier rule."""
    return max(rules, key=lambda r: (val[r]["image_auroc"], -rules.index(r)))


def tested_checkpoint(run: Path, results: dict) -> Path:
    """The checkpoint the run tested: its best.ckpt, or last.ckpt where the method has no
    validation rule (results.json then says "weights after the last training epoch")."""
    best = run / "checkpoints" / "best.ckpt"
    return best if str(results.get("tested_checkpoint", "")).endswith("best.ckpt") else run / "checkpoints" / "last.ckpt"


def load_tested_run(run: Path) -> tuple[dict, Any, Any]:
    """A finished run folder's ``results.json``, its datamodule (set up: the run's own validation
    hold-out and test set) and the model of the checkpoint it tested, in the run's memory layout."""
    if not (run / "results.json").is_file():
        raise UserError(f"{run} has no results.json: pass the folder of a finished `python -m anomaly_kd.run` job.")
    results = json.loads((run / "results.json").read_text())
    cfg = OmegaConf.create(results["config"])
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    loaded = load_checkpoint(tested_checkpoint(run, results), image_size=int(cfg.data.image_size))
    if channels_last_on(cfg.model.get("channels_last", "auto"), loaded.device.type):  # the run's layout
        loaded.model.use_channels_last()
    return results, datamodule, loaded.model


def evaluate_run(run: Path, rules: tuple[str, ...], window: float, synthetic_seed: int) -> dict:
    results, datamodule, model = load_tested_run(run)
    config = results["config"]
    fpr_limit = float(config.get("fpr_limit", 0.3))
    normals = datamodule.val_set
    synthetic = ConcatDataset([normals, DefectCopies(normals, seed=synthetic_seed, window=window)])
    val = score_set(model, DataLoader(synthetic, batch_size=datamodule.eval_batch_size, shuffle=False))
    val_rules = rule_metrics(val, rules)
    chosen = choose(val_rules, rules)  # before the test set is touched
    test = score_set(model, datamodule.test_dataloader())  # the run's own test batches
    return {
        "run": run.name, "model": config["model"]["name"], "teacher": config["model"].get("backbone"),
        "seed": config.get("seed"), "rules": list(rules), "window": window, "synthetic_seed": synthetic_seed,
        "n_val_normals": len(normals), "chosen": chosen,
        "val_synthetic": {"rules": val_rules, **pixel_metrics(val, fpr_limit)},
        "test": {"rules": rule_metrics(test, rules), **pixel_metrics(test, fpr_limit)},
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} {platform.node()}",
        "torch": torch.__version__,
    }  # fmt: skip


def table(records: list[dict]) -> str:
    head = ("| run | rule | synthetic val image AUROC | chosen | test image AUROC | test image AP |"
            " test AUPRO (all rules) |\n|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for r in records:
        for rule in r["rules"]:
            v, t = r["val_synthetic"]["rules"][rule], r["test"]["rules"][rule]
            mark = "**chosen**" if rule == r["chosen"] else "not chosen (test shown for information)"
            lines.append(f"| {r['run']} | {rule} | {v['image_auroc']:.3f} | {mark} | {t['image_auroc']:.3f} | "
                         f"{t['image_ap']:.3f} | {r['test']['aupro']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (checkpoints/ and results.json)")
    parser.add_argument("--rules", default=",".join(DEFAULT_RULES), help="comma-separated image-score rules")
    parser.add_argument("--window", type=float, default=0.25, help="defect window as a fraction of the image side")
    parser.add_argument("--synthetic-seed", type=int, default=0, help="seed of the synthetic defects")
    args = parser.parse_args(argv)
    rules = tuple(r.strip() for r in args.rules.split(",") if r.strip())
    for rule in rules or ("",):  # an unknown rule stops here, before any run is scored
        blur_sigma(rule)
    records = []
    for run in args.runs:
        record = evaluate_run(run, rules, args.window, args.synthetic_seed)
        (run / "score_rules.json").write_text(json.dumps(record, indent=1))
        records.append(record)
        print(f"[score_rules] {run.name}: chosen {record['chosen']}", flush=True)
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_on_user_error(main))
