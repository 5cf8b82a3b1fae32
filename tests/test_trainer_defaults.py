"""trainer groups: the default picks the accelerator that exists, trainer=cpu forces the CPU,
trainer=gpu stops with one line where torch sees no GPU; results name the device."""

from __future__ import annotations

import pytest
import torch

from anomaly_kd.config_checks import validate_config
from anomaly_kd.errors import UserError
from anomaly_kd.reporting.results import cpu_name, device_name
from tests.helpers import compose_config


def test_default_trainer_is_auto_float32_one_device(compose_cfg):
    trainer = compose_cfg([]).trainer
    assert (trainer.accelerator, trainer.devices, trainer.precision) == ("auto", 1, "32-true")
    assert compose_cfg(["trainer=cpu"]).trainer.accelerator == "cpu"
    gpu = compose_cfg(["trainer=gpu"]).trainer
    assert (gpu.accelerator, gpu.devices, gpu.precision) == ("gpu", 1, "32-true")


def test_gpu_trainer_without_a_gpu_is_one_clear_line(compose_cfg, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    validate_config(compose_cfg([]))  # auto and cpu need nothing
    validate_config(compose_cfg(["trainer=cpu"]))
    with pytest.raises(UserError) as err:
        validate_config(compose_cfg(["trainer=gpu"]))
    message = str(err.value)
    assert "\n" not in message and "trainer=gpu" in message and "trainer=cpu" in message


def test_device_name_of_the_cpu():
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.lower().startswith("model name")]
    assert device_name(torch.device("cpu")) == cpu_name() == (names[0] if names else cpu_name())


def test_lightning_tip_advert_is_dropped_and_other_messages_stay(caplog):
    import logging

    import anomaly_kd.console  # noqa: F401  (installs the filter)
    from pytorch_lightning.utilities import rank_zero_info

    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing litlogger")
        rank_zero_info("GPU available: False, used: False")
    messages = [r.getMessage() for r in caplog.records]
    assert "GPU available: False, used: False" in messages
    assert not any("Tip:" in m for m in messages)


def test_config_summary_is_one_line_saying_what_how_and_where(tmp_path):
    from anomaly_kd.console import config_summary

    cfg = compose_config(["experiment=demo", "trainer.max_epochs=2"], tmp_path)
    assert config_summary(cfg) == (f"stfpm (efficientnet_lite0) on textures/brick, seed 0 | 128 px, batch 32, "
                                   f"auto 32-true | train 2 epochs then test | output: {tmp_path}")
    cfg = compose_config(["train=false", "ckpt_path=/m.ckpt", "model=reverse_distillation"], tmp_path)
    assert config_summary(cfg).split(" | ")[2] == "test only of /m.ckpt"
