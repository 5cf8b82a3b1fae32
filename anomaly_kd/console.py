"""What a normal run prints: Lightning's messages that come at every run and say nothing about
this one are dropped here (installed on import, by the pipeline); every other warning stays."""

from __future__ import annotations

import logging
import warnings

# Lightning warnings that are expected here and would only hide the useful ones.
for _pattern in (
    r".*module\(s\) in eval mode.*",  # frozen teachers stay in eval mode on purpose
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*does not have many workers.*",  # num_workers is a data option; 0 is the safe default
    r".*smaller than the logging interval.*",
):
    warnings.filterwarnings("ignore", message=_pattern)


class _DropLightningTip(logging.Filter):
    """Lightning logs "💡 Tip: ... try installing litlogger" at every run: an advertisement, not
    news about the run. Dropped; every other Lightning message stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


for _name in ("lightning_utilities.core.rank_zero", "lightning_fabric.utilities.rank_zero",
              "pytorch_lightning.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropLightningTip())


def config_summary(cfg) -> str:
    """One line at the start of a run: what is trained on what, how, and where the files go."""
    from omegaconf import OmegaConf

    def get(key: str, default=None):
        return OmegaConf.select(cfg, key, default=default)

    backbone = get("model.backbone")
    what = f"{get('model.name')}" + (f" ({backbone})" if backbone else "")
    what += f" on {get('data.name')}/{get('category')}, seed {get('seed')}"
    how = f"{get('data.image_size')} px, batch {get('data.batch_size')}"
    how += f", {get('trainer.accelerator', 'auto')} {get('trainer.precision', '32-true')}"
    ckpt = get("ckpt_path")
    if not get("train", True):
        stages = f"test only of {ckpt}"
    else:
        stages = f"train {get('trainer.max_epochs')} epochs" + (f" from {ckpt}" if ckpt else "")
        stages += " then test" if get("test", True) else ""
    return f"{what} | {how} | {stages} | output: {get('paths.output_dir')}"
