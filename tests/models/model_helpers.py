"""Helpers for the method tests: normal texture crops, a planted defect, a short training loop."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class Texture:
    """Crops of scikit-image's brick photo, split like :mod:`anomaly_kd.data.textures`: normal
    training crops from the top ``NORMAL_FRACTION`` of the photo, test crops from the rest."""

    normal: torch.Tensor  # [H, W] in [0, 1]
    test: torch.Tensor
    other: torch.Tensor  # another texture, pasted as the defect
    size: int = 64

    def crops(self, region: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        s = self.size
        ys = torch.randint(0, region.shape[0] - s + 1, (n,), generator=generator)
        xs = torch.randint(0, region.shape[1] - s + 1, (n,), generator=generator)
        gray = torch.stack([region[y : y + s, x : x + s] for y, x in zip(ys.tolist(), xs.tolist())])
        return gray.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()

    def normal_batches(self, n_batches: int, batch_size: int, seed: int = 0) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return [self.crops(self.normal, batch_size, generator) for _ in range(n_batches)]

    def planted(self, n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clean test crops, the same with a square of the other texture pasted in the centre,
        the square's mask [size, size])."""
        generator = torch.Generator().manual_seed(seed)
        clean = self.crops(self.test, n, generator)
        s, q = self.size, self.size // 4
        mask = torch.zeros(s, s, dtype=torch.bool)
        mask[s // 2 - q // 2 : s // 2 + q // 2, s // 2 - q // 2 : s // 2 + q // 2] = True
        defective = clean.clone()
        defective[..., mask] = self.other[100 : 100 + q, 100 : 100 + q].flatten()
        return clean, defective, mask


def train_steps(model, batches: Sequence[torch.Tensor]) -> list[float]:
    """The method's own ``training_step`` and ``configure_optimizers``, one step per batch."""
    optimizer = model.configure_optimizers()
    model.train()
    losses = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached
        for i, images in enumerate(batches):
            loss = model.training_step({"image": images}, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    return losses


def defect_contrast(model, texture: Texture) -> tuple[torch.Tensor, float, float]:
    """Maps of the defective crops, mean map on the defect / off it, and on the defect / the same
    region of the clean crops."""
    clean, defective, mask = texture.planted()
    maps, scores = model.anomaly_map(defective)
    clean_maps, _ = model.anomaly_map(clean)
    assert maps.shape == (len(defective), 1, texture.size, texture.size)
    assert torch.allclose(scores, maps.flatten(1).amax(1))
    inside = maps[:, 0][:, mask].mean()
    return maps, float(inside / maps[:, 0][:, ~mask].mean()), float(inside / clean_maps[:, 0][:, mask].mean())


def assert_learns_planted_defect(model, texture: Texture, n_batches: int, min_ratio: float) -> torch.Tensor:
    """The loss falls on a fixed batch; after ``n_batches`` of fresh normal crops the map is higher
    on a planted defect than off it and than on the same region of the clean crops. The maps."""
    losses = train_steps(model, [texture.normal_batches(1, 4)[0]] * 4)  # a fixed batch
    assert losses[-1] < losses[0]
    train_steps(model, texture.normal_batches(n_batches, 8))  # fresh normal crops
    maps, off_ratio, clean_ratio = defect_contrast(model, texture)
    assert (maps >= 0).all()
    assert off_ratio > min_ratio and clean_ratio > min_ratio
    return maps


def assert_config_default(cfg, cls, key: str, value) -> None:
    """The composed config holds ``value`` at ``key``; for a ``model.`` key the LightningModule
    class's own constructor default agrees with it (a tuple default compares as a list)."""
    import inspect

    from omegaconf import OmegaConf

    assert OmegaConf.select(cfg, key) == value
    if key.startswith("model."):
        default = inspect.signature(cls).parameters[key[len("model."):]].default
        assert (list(default) if isinstance(default, tuple) else default) == value
