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
