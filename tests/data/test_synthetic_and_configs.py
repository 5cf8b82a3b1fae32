"""The reusable synthetic MVTec builder, the conf/data YAMLs, and a Lightning smoke run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from anomaly_kd.data import MNISTDataModule, MVTecDataModule, TexturesDataModule, make_synthetic_mvtec

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_builder_layout_and_determinism(tmp_path):
    root = make_synthetic_mvtec(tmp_path / "a", category="thing", n_train=3, n_test_good=2, n_test_defect=4, size=40, defects=("patch", "stain"))
    assert root == tmp_path / "a"
    names = set(tree(root))
    assert {"thing/train/good/002.png", "thing/test/good/001.png", "thing/test/patch/001.png", "thing/test/stain/001.png",
            "thing/ground_truth/patch/001_mask.png", "thing/ground_truth/stain/000_mask.png"} <= names  # fmt: skip
    assert len(names) == 3 + 2 + 4 + 4
    same = make_synthetic_mvtec(tmp_path / "b", category="thing", n_train=3, n_test_good=2, n_test_defect=4, size=40, defects=("patch", "stain"))
    assert tree(root) == tree(same)
    mask = np.asarray(Image.open(root / "thing" / "ground_truth" / "patch" / "000_mask.png"))
    assert mask.shape == (40, 40) and set(np.unique(mask)) == {0, 255}
    with pytest.raises(ValueError):
        make_synthetic_mvtec(tmp_path / "c", defects=("dent",))


def compose(name: str, data_dir: Path, category: str, **overrides):
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "category": category, "seed": 0})
    cfg.data = OmegaConf.load(CONF / f"{name}.yaml")
    for key, value in overrides.items():
        cfg.data[key] = value
    assert cfg.data.pop("name") == name  # the pipeline reports it and drops it before instantiating
    return instantiate(cfg.data)


def test_yaml_configs_instantiate(tmp_path, tiny_mnist):
    root = make_synthetic_mvtec(tmp_path / "mvtec")
    mvtec = compose("mvtec", root, "widget")
    assert isinstance(mvtec, MVTecDataModule) and (mvtec.image_size, mvtec.batch_size, mvtec.val_split) == (256, 32, 0.2)
    textures = compose("textures", tmp_path, "gravel")
    assert isinstance(textures, TexturesDataModule) and textures.n_train == 100 and textures.category == "gravel"
    mnist = compose("mnist", tiny_mnist(), 4)  # Hydra passes an int category
    assert isinstance(mnist, MNISTDataModule) and mnist.category == "4" and mnist.download is False and mnist.test_limit is None
    for name in ("mvtec", "textures", "mnist"):
        text = (CONF / f"{name}.yaml").read_text()
        assert "${category}" in text and "${seed}" in text and "${paths.data_dir}" in text


class _Probe(pl.LightningModule):
    """Counts what the trainer fed it."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = {"train": 0, "val": 0, "test": 0}

    def _step(self, batch, stage):
        assert batch["image"].shape[1:] == (3, 16, 16) and batch["mask"].shape[1:] == (1, 16, 16)
        assert batch["image"].dtype == torch.uint8  # a plain LightningModule gets the loader's uint8
        self.seen[stage] += len(batch["label"])
        return (self.weight * batch["image"].float().mean()).sum()

    def training_step(self, batch, _):
        return self._step(batch, "train")

    def validation_step(self, batch, _):
        self._step(batch, "val")

    def test_step(self, batch, _):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("val_split", [0.2, 0.0])
def test_lightning_runs_the_loaders(mvtec_root, val_split):
    dm = MVTecDataModule(root=str(mvtec_root), category="widget", image_size=16, batch_size=3, val_split=val_split)
    probe = _Probe()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(probe, datamodule=dm)
    trainer.test(probe, datamodule=dm, verbose=False)
    assert probe.seen == {"train": 10 - round(10 * val_split), "val": round(10 * val_split), "test": 6}


def test_datasets_pickle_for_worker_processes(mvtec_root, tiny_mnist, tmp_path):
    import pickle

    modules = [
        MVTecDataModule(root=str(mvtec_root), category="widget", image_size=8),
        TexturesDataModule(root=str(tmp_path), category="grass", image_size=8, crop_size=32, n_train=3, n_test_good=1, n_test_defect=1),
        MNISTDataModule(root=str(tiny_mnist()), category=0, image_size=8),
    ]
    for dm in modules:
        dm.setup()
        for dataset in (dm.train_set, dm.val_set, dm.test_set):
            clone = pickle.loads(pickle.dumps(dataset))
            assert torch.equal(clone[0]["image"], dataset[0]["image"])
