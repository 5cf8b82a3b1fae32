"""trainer groups: the default picks the accelerator that exists, trainer=cpu forces the CPU,
trainer=gpu stops with one line where torch sees no GPU; results name the device and the tested
epoch."""

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


def test_channels_last_gives_the_same_maps_and_is_on_for_the_cpu_by_default(compose_cfg, tmp_path):
    """model.channels_last: the same maths on NHWC kernels (maps to float round-off); auto = on
    for the CPU (where benchmarks/channels_last.py measured it to pay), false keeps NCHW."""
    import pytorch_lightning as pl
    import torch

    from anomaly_kd.trainer_setup import apply_channels_last, build_model

    cfg = compose_cfg(["model=stfpm", "model.pretrained=false", "trainer=cpu"])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    torch.manual_seed(0)
    plain = build_model(cfg).eval()
    torch.manual_seed(0)
    nhwc = build_model(cfg).eval()
    assert cfg.model.channels_last == "auto" and apply_channels_last(cfg, nhwc, trainer) is True
    conv = nhwc.model.student.body["stem"][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = nhwc.on_after_batch_transfer({"image": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)}, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, expected_scores = plain.anomaly_map(batch["image"].contiguous())
        maps, scores = nhwc.anomaly_map(batch["image"])
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores, expected_scores, rtol=1e-5, atol=1e-6)
    cfg.model.channels_last = False
    assert apply_channels_last(cfg, plain, trainer) is False
    assert plain.model.student.body["stem"][0].weight.is_contiguous()


def test_tested_epoch_reads_the_checkpoint_or_the_last_epoch():
    from anomaly_kd.models.stfpm import STFPM
    from anomaly_kd.models.stfpm_ensemble import STFPMEnsemble
    from anomaly_kd.trainer_setup import tested_epoch

    single, per_student = STFPM(pretrained=False), STFPMEnsemble(pretrained=False)
    joint = STFPMEnsemble(pretrained=False, checkpoint_rule="joint")
    assert tested_epoch(single, None, trained=True, epochs_trained=30) == 29  # the weights after the last epoch
    assert tested_epoch(single, None, trained=False, epochs_trained=0) is None  # nothing trained
    assert tested_epoch(single, "best.ckpt", trained=True, epochs_trained=30) is None  # nothing loaded yet
    single.on_load_checkpoint({"epoch": 7, "state_dict": {}})  # Lightning's hook, as the test loads the file
    selection = {"errors": [1.0, 2.0, 3.0], "epochs": [4, 9, 2], "states": [None] * 3, "pending": False}
    per_student.on_load_checkpoint({"epoch": 9, "student_selection": selection})
    joint.on_load_checkpoint({"epoch": 5, "student_selection": {**selection, "epochs": [None] * 3}})
    assert tested_epoch(single, "best.ckpt", trained=True, epochs_trained=30) == 7
    assert tested_epoch(per_student, "best.ckpt", trained=True, epochs_trained=10) == [4, 9, 2]
    assert tested_epoch(joint, "best.ckpt", trained=True, epochs_trained=10) == 5
