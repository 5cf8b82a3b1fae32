"""Every data set's YAML instantiates its module; every benchmark=<name>_all sweeps its official categories."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from anomaly_kd.data.btad import BTAD_CATEGORIES
from anomaly_kd.data.mvtec3d import MVTEC3D_CATEGORIES
from anomaly_kd.data.mvtec_ad2 import MVTEC_AD2_CATEGORIES
from anomaly_kd.data.mvtec_loco import MVTEC_LOCO_CATEGORIES
from anomaly_kd.data.visa import VISA_CATEGORIES
from tests.helpers import REPO, compose_config

MPDD = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")
OFFICIAL = {"visa": VISA_CATEGORIES, "mvtec3d": MVTEC3D_CATEGORIES, "mvtec_loco": MVTEC_LOCO_CATEGORIES,
            "mvtec_ad2": MVTEC_AD2_CATEGORIES, "btad": BTAD_CATEGORIES, "mpdd": MPDD}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_benchmark_sweeps_the_official_categories(name, tmp_path):
    bench = OmegaConf.load(REPO / "conf" / "benchmark" / f"{name}_all.yaml")
    assert bench.defaults == [{"override /data": name}]
    values = [v.strip().strip("'") for v in str(bench.hydra.sweeper.params.category).split(",")]
    assert tuple(values) == OFFICIAL[name]
    cfg = compose_config([f"benchmark={name}_all", f"paths.data_dir={tmp_path}"], tmp_path / "o")
    assert cfg.data.name == name


@pytest.mark.parametrize("name, target", [
    ("folder", "FolderDataModule"), ("visa", "VisADataModule"), ("mvtec3d", "MVTec3DDataModule"),
    ("mvtec_loco", "MVTecLOCODataModule"), ("mvtec_ad2", "MVTecAD2DataModule"), ("btad", "BTADDataModule"),
    ("mpdd", "MVTecDataModule"),
])
def test_yaml_names_its_module(name, target, tmp_path):
    cfg = compose_config([f"data={name}", f"paths.data_dir={tmp_path}"], tmp_path / "o")
    assert cfg.data._target_.endswith(f".{target}") and cfg.data.name == name
