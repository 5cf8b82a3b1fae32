"""Launch combinations that cannot work, refused with one clear line before anything is built.

- **DDP inside a multirun.** Lightning's ``strategy=ddp`` starts the other ranks by re-running the
  command line (``sys.argv``) with ``LOCAL_RANK`` set. Under ``python -m anomaly_kd.run -m ...``
  that command line is the whole sweep: each rank would start its own copy of the sweep. On one
  machine use ``trainer.strategy=ddp_spawn`` (ranks are started from inside the job), or
  ``hydra/launcher=slurm`` on a cluster, where SLURM starts one task per device and Lightning only
  joins them (its ``SLURMEnvironment``). Refused: multirun + a re-executing DDP strategy + more
  than one process + not inside a SLURM job step (``SLURM_NTASKS`` unset).
- **A sweep config without ``-m``.** ``benchmark=mvtec_all`` only sets ``hydra.sweeper.params``;
  Hydra ignores them in a single run, which would silently train one default category.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from anomaly_kd.errors import UserError

#: strategies whose extra ranks Lightning starts by re-running the command line
_REEXEC_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false",
                      "fsdp", "deepspeed")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def reexecutes_command_line(strategy: Any) -> bool:
    """True for strategies that start ranks > 0 by running ``sys.argv`` again (``ddp``, ...)."""
    strategy = _plain(strategy)
    if strategy is None:
        return False
    if isinstance(strategy, Mapping):
        target = str(strategy.get("_target_", ""))
        if target.endswith(("DDPStrategy", "FSDPStrategy", "DeepSpeedStrategy")):
            return strategy.get("start_method", "popen") == "popen"
        return False
    name = str(strategy).strip().lower()
    if name == "auto":
        return True  # with several devices Lightning picks "ddp"
    return name in _REEXEC_STRATEGIES or (name.startswith("ddp") and "spawn" not in name
                                           and "fork" not in name and "notebook" not in name)


def process_count(trainer_cfg: Mapping | DictConfig) -> int:
    """How many training processes Lightning would use for these trainer settings (>= 1)."""
    get = trainer_cfg.get
    devices = _plain(get("devices", "auto"))
    accelerator = str(_plain(get("accelerator", "auto")) or "auto").lower()
    nodes = int(_plain(get("num_nodes", 1)) or 1)
    if isinstance(devices, (list, tuple, ListConfig)):
        count = len(devices)
    else:
        text = str(devices).strip().lower()
        if "," in text:
            count = len([part for part in text.split(",") if part.strip()])
        elif text in ("auto", "-1"):
            count = 1 if accelerator == "cpu" else _visible_gpus()
        else:
            try:
                count = int(text)
            except ValueError:
                count = 1
    return max(count, 1) * max(nodes, 1)


def _visible_gpus() -> int:
    try:
        import torch

        return max(torch.cuda.device_count(), 1)
    except Exception:
        return 1


def under_slurm_step(env: Mapping[str, str] | None = None) -> bool:
    """Inside a SLURM job step, where SLURM (not Lightning) starts the processes."""
    env = os.environ if env is None else env
    return bool(env.get("SLURM_NTASKS"))


def ddp_multirun_problem(cfg: DictConfig, launcher_target: str = "", env: Mapping[str, str] | None = None) -> str | None:
    """The one-line message refusing DDP-in-multirun, or None when the combination is fine."""
    if "SlurmLauncher" in launcher_target:
        return None  # one SLURM job per sweep point, one task per device: SLURM starts the ranks
    trainer = cfg.get("trainer") or {}
    strategy = trainer.get("strategy", "auto")
    if not reexecutes_command_line(strategy) or process_count(trainer) <= 1 or under_slurm_step(env):
        return None
    name = _plain(strategy)
    name = name.get("_target_", "ddp") if isinstance(name, Mapping) else name
    return (
        f"trainer.strategy={name} with {process_count(trainer)} processes cannot run inside a multirun (-m): "
        "Lightning starts the extra processes by re-running the command line, i.e. the whole sweep. "
        "Use hydra/launcher=slurm (SLURM starts one process per device), trainer.strategy=ddp_spawn, "
        "or trainer.devices=1."
    )


def _hydra_runtime() -> tuple[Any, str] | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
        target = str(OmegaConf.select(hydra_cfg, "launcher._target_", default="") or "")
        return hydra_cfg, target
    except Exception:
        return None


def sweep_without_multirun_problem(hydra_cfg: DictConfig) -> str | None:
    """A config that defines a sweep (``hydra.sweeper.params``) used without ``-m``."""
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None)
    if not params:
        return None
    keys = ", ".join(str(key) for key in params)
    choice = OmegaConf.select(hydra_cfg, "runtime.choices.benchmark", default=None)
    what = f"benchmark={choice}" if choice else "this config"
    return f"{what} defines a sweep over {keys}: run it as a multirun, with -m (python -m anomaly_kd.run -m ...)."


def check_launch(cfg: DictConfig) -> None:
    """Raise :class:`UserError` for launch combinations that cannot work (see the module doc)."""
    runtime = _hydra_runtime()
    if runtime is None:
        return  # pipeline.run called from Python: no launcher involved
    hydra_cfg, launcher_target = runtime
    from hydra.types import RunMode

    if hydra_cfg.mode == RunMode.MULTIRUN:
        problem = ddp_multirun_problem(cfg, launcher_target)
    else:
        problem = sweep_without_multirun_problem(hydra_cfg)
    if problem:
        raise UserError(problem)


__all__ = [
    "check_launch",
    "ddp_multirun_problem",
    "process_count",
    "reexecutes_command_line",
    "sweep_without_multirun_problem",
    "under_slurm_step",
]
