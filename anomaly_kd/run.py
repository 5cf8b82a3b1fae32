"""Entry point: ``python -m anomaly_kd.run model=stfpm data=mvtec category=hazelnut``.

Thin on purpose: Hydra composes the config, :func:`anomaly_kd.pipeline.run` does the work, and
errors a user can cause end as one line (``error: ...``) with exit status 2.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from anomaly_kd.errors import UserError
from anomaly_kd.pipeline import run

log = logging.getLogger("anomaly_kd")


def user_error_in(exc: BaseException) -> UserError | None:
    """The UserError behind ``exc`` (Hydra's instantiate wraps errors raised by constructors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@hydra.main(version_base="1.3", config_path="pkg://anomaly_kd.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        results = run(cfg)
    except Exception as exc:
        err = user_error_in(exc)
        if err is None:
            raise
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    value = results.get("metrics", {}).get("image_auroc")
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
