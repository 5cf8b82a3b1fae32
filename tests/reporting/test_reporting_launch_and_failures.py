"""Launch checks (DDP inside a multirun), launcher/benchmark configs, failed-job records, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from anomaly_kd.errors import UserError
from anomaly_kd.reporting.failures import error_line, is_main_process, write_failed_results
from anomaly_kd.reporting.launch import (
    ddp_multirun_problem,
    process_count,
    reexecutes_command_line,
    sweep_without_multirun_problem,
)


def hydra_compose(overrides: list[str]):
    """The full config (with the hydra node) as a multirun would see it."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="anomaly_kd.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("trainer", "env", "launcher", "refused"),
    [
        ({"strategy": "ddp", "devices": 2}, {}, "hydra._internal.core_plugins.basic_launcher.BasicLauncher", True),
        ({"strategy": "ddp", "devices": 2}, {}, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", True),
        ({"strategy": "auto", "accelerator": "gpu", "devices": [0, 1]}, {}, "", True),
        ({"strategy": "ddp", "devices": 1}, {}, "", False),
        ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, {}, "", True),
        ({"strategy": "ddp_spawn", "devices": 4}, {}, "", False),
        ({"strategy": "auto", "accelerator": "cpu", "devices": "auto"}, {}, "", False),
        ({"strategy": "ddp", "devices": 4}, {"SLURM_NTASKS": "4"}, "", False),  # a SLURM job step
        ({"strategy": "ddp", "devices": 4}, {}, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", False),
        ({"strategy": {"_target_": "pytorch_lightning.strategies.DDPStrategy"}, "devices": 2}, {}, "", True),
    ],
)
def test_ddp_inside_a_multirun_is_refused_unless_slurm_starts_the_processes(trainer, env, launcher, refused):
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", **trainer}})
    problem = ddp_multirun_problem(cfg, launcher, env=env)
    assert (problem is not None) == refused
    if refused:
        assert "hydra/launcher=slurm" in problem and "ddp_spawn" in problem and "\n" not in problem


def test_process_count_and_strategy_kinds():
    assert process_count({"devices": "0,1,2"}) == 3
    assert process_count({"devices": 2, "num_nodes": 2}) == 4
    assert process_count({"devices": -1, "accelerator": "cpu"}) == 1
    assert reexecutes_command_line("ddp_find_unused_parameters_true")
    assert not reexecutes_command_line("ddp_spawn") and not reexecutes_command_line("ddp_notebook")
    assert not reexecutes_command_line({"_target_": "pytorch_lightning.strategies.DDPStrategy", "start_method": "spawn"})


def test_slurm_launcher_gives_one_task_and_one_gpu_per_device():
    cfg = hydra_compose(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                         "hydra.launcher.partition=gpu"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == 4 and launcher["gpus_per_node"] == 4 and launcher["nodes"] == 1
    assert launcher["partition"] == "gpu" and launcher["submitit_folder"].endswith(".submitit/%j")
    assert ddp_multirun_problem(cfg, launcher["_target_"], env={}) is None
    local = OmegaConf.to_container(hydra_compose(["hydra/launcher=slurm_local"]).hydra.launcher, resolve=True)
    assert local["_target_"].endswith("submitit_launcher.LocalLauncher") and local["tasks_per_node"] == 1


def test_benchmark_selects_all_15_mvtec_categories_as_a_sweep():
    from anomaly_kd.data import MVTEC_CATEGORIES, TEXTURE_CATEGORIES

    cfg = hydra_compose(["benchmark=mvtec_all"])
    assert cfg.data.name == "mvtec"
    assert cfg.hydra.sweeper.params.category.split(",") == list(MVTEC_CATEGORIES)
    textures = hydra_compose(["benchmark=textures_all"])
    assert textures.hydra.sweeper.params.category.split(",") == list(TEXTURE_CATEGORIES)
    assert not hydra_compose([]).hydra.sweeper.params  # no sweep unless asked
    # without -m Hydra would ignore the sweep and train one default category: refused instead
    problem = sweep_without_multirun_problem(cfg.hydra)
    assert problem.startswith("benchmark=mvtec_all defines a sweep over category") and "-m" in problem
    assert sweep_without_multirun_problem(hydra_compose([]).hydra) is None


def test_sweep_subfolders_are_readable_and_unique_per_job():
    cfg = hydra_compose(["model=stfpm", "data=mvtec", "category=hazelnut", "seed=2", "hydra.job.num=5"])
    assert OmegaConf.select(cfg, "hydra.sweep.subdir") == "stfpm/mvtec/hazelnut/seed2_job5"
    assert "SweepReport" in cfg.hydra.callbacks.sweep_report._target_


def test_failed_results_json_has_the_identifying_keys(tmp_path, compose_cfg):
    cfg = compose_cfg(["model=stfpm", "data=mvtec", "category=hazelnut", "seed=3"], tmp_path / "job")
    try:
        try:
            raise UserError("category 'hazelnut' not found in /data; choose one")
        except UserError as inner:
            raise RuntimeError("Error in call to target 'X'") from inner
    except RuntimeError as exc:
        path = write_failed_results(tmp_path / "job", cfg, exc)
        line = error_line(exc)
    saved = json.loads(path.read_text())
    assert saved["status"] == "failed" and saved["error"] == line
    assert line == "category 'hazelnut' not found in /data; choose one"  # the UserError behind the wrapper
    assert (saved["model"], saved["data"], saved["category"], saved["seed"]) == ("stfpm", "mvtec", "hazelnut", 3)
    assert saved["config"]["model"]["name"] == "stfpm" and "Traceback" in saved["traceback"]
    assert saved["error_type"] == "UserError" and saved["output_dir"] == str((tmp_path / "job").resolve())


def test_a_later_failure_never_replaces_finished_results(tmp_path, compose_cfg):
    job = tmp_path / "job"
    cfg = compose_cfg(["model=stfpm", "data=mvtec", "category=hazelnut"], job)
    job.mkdir(parents=True, exist_ok=True)
    # no results yet, or a failed one: the failure goes to results.json
    assert write_failed_results(job, cfg, ValueError("first")) == (job / "results.json").resolve()
    assert write_failed_results(job, cfg, ValueError("second")).name == "results.json"
    assert json.loads((job / "results.json").read_text())["error"] == "ValueError: second"
    # a finished run's results stay; the failure of a later re-test is written beside them
    finished = {"status": "ok", "metrics": {"image_auroc": 0.75}}
    (job / "results.json").write_text(json.dumps(finished))
    path = write_failed_results(job, cfg, UserError("data folder /x not found; set data.root"))
    assert path == (job / "results.failed.json").resolve()
    assert json.loads((job / "results.json").read_text()) == finished
    assert json.loads(path.read_text())["error"] == "data folder /x not found; set data.root"


def test_only_the_main_process_writes(monkeypatch, tmp_path):
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert is_main_process()
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert not is_main_process()
    assert write_failed_results(tmp_path, None, ValueError("x")) is None
    assert not (tmp_path / "results.json").exists()


def test_error_line_is_one_line():
    assert error_line(ValueError("a\nb   c")) == "ValueError: a b c"
    assert len(error_line(RuntimeError("x" * 5000))) <= 500


def _state(has_masks: bool, n: int = 12, size: int = 16, seed: int = 0):
    from anomaly_kd.metrics import AnomalyMetricState

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    masks = np.zeros((n, size, size), bool)
    masks[labels == 1, 4:9, 4:9] = True
    maps = rng.random((n, size, size)).astype(np.float32) + masks * 0.7
    scores = maps.reshape(n, -1).max(1)
    state = AnomalyMetricState(has_masks=has_masks, fpr_limit=0.3)
    state.update(maps if has_masks else None, scores, labels, masks if has_masks else None)
    return state


def test_curves_and_histogram_pngs(tmp_path):
    from PIL import Image

    from anomaly_kd.callbacks.plots import write_metric_plots

    paths = write_metric_plots(_state(True), tmp_path / "with_masks", 0.3, {"image_auroc": 0.9, "aupro": 0.7}, 0.5)
    wide = Image.open(paths["curves"]).size
    assert Image.open(paths["histogram"]).size[0] > 100
    # MNIST-like data without masks: image ROC only, a narrower figure
    narrow = Image.open(write_metric_plots(_state(False), tmp_path / "no_masks")["curves"]).size
    assert wide[0] > 2.5 * narrow[0] and wide[1] == narrow[1]
    # a single class: no curve, but still a figure
    from anomaly_kd.metrics import AnomalyMetricState

    one_class = AnomalyMetricState(has_masks=False)
    one_class.update(None, np.array([0.1, 0.2]), np.array([0, 0]))
    assert write_metric_plots(one_class, tmp_path / "one")["curves"].is_file()


def test_under_slurm_lightning_joins_the_tasks_slurm_started(monkeypatch):
    """What hydra/launcher=slurm relies on: in a SLURM job step with one task per device, the
    ddp strategy uses SLURMEnvironment and starts no process itself (and is not refused)."""
    import pytorch_lightning as pl

    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "run", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_ID": "42", "SLURM_NODELIST": "node1"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    environment = trainer.strategy.cluster_environment
    assert type(environment).__name__ == "SLURMEnvironment" and environment.creates_processes_externally
    assert trainer.world_size == 2
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "strategy": "ddp", "devices": 2}})
    assert ddp_multirun_problem(cfg, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher") is None
