"""STFPM pieces against hand computations and the authors' formulas."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anomaly_kd.models.stfpm import STFPM
from anomaly_kd.models.stfpm.anomaly_map import stfpm_anomaly_map
from anomaly_kd.models.stfpm.loss import stfpm_loss


def test_loss_matches_the_authors_formula():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    student = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    expected = 0.0
    for t, s in zip(teacher, student):  # gdwang08/STFPM train_val: sum over C, mean over B,H,W
        expected += torch.sum((F.normalize(t, dim=1) - F.normalize(s, dim=1)) ** 2, 1).mean()
    assert torch.allclose(stfpm_loss(teacher, student), expected)
    assert stfpm_loss(teacher, teacher).item() < 1e-12


def test_anomaly_map_hand_case():
    # One level of 1x1 features: t=(1,0), s=(0,1) -> normalised distance (1)^2 + (-1)^2 = 2.
    t = [torch.tensor([[[[1.0]], [[0.0]]]])]
    s = [torch.tensor([[[[0.0]], [[1.0]]]])]
    amap = stfpm_anomaly_map(t, s, (4, 4))
    assert amap.shape == (1, 1, 4, 4)
    assert torch.allclose(amap, torch.full_like(amap, 2.0))
    # Two levels multiply: the second identical level contributes 0 -> map 0.
    assert stfpm_anomaly_map(t + t, s + t, (4, 4)).abs().max() == 0


def test_lightning_module_defaults_and_training_step_decreases_loss():
    model = STFPM(pretrained=False)
    assert model.input_multiple == 16
    assert [g["lr"] for g in model.configure_optimizers().param_groups] == [0.4]
    images = torch.rand(4, 3, 64, 64)
    optimizer = torch.optim.SGD(model.model.student.parameters(), lr=0.05, momentum=0.9)
    losses = []
    model.train()
    for _ in range(8):
        loss = stfpm_loss(*model.model(images))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    maps, scores = model.anomaly_map(images)
    assert maps.shape == (4, 1, 64, 64) and (maps >= 0).all()
    assert torch.allclose(scores, maps.flatten(1).amax(1))
    # The teacher is never updated.
    assert not any(p.requires_grad for p in model.model.teacher.parameters())


def test_the_model_map_is_the_authors_map_of_its_features():
    """STFPMModel inherits the shared student-teacher map: exactly stfpm_anomaly_map of its levels."""
    from anomaly_kd.models.stfpm.torch_model import STFPMModel

    torch.manual_seed(0)
    model = STFPMModel(pretrained=False, layers=["layer1", "layer2"]).eval()
    images = torch.rand(2, 3, 32, 32)
    maps, scores = model.anomaly_map(images)
    with torch.no_grad():
        teacher, student = model(images)
    expected = stfpm_anomaly_map(teacher, student, (32, 32))
    assert torch.equal(maps, expected) and torch.equal(scores, expected.flatten(1).amax(1))
