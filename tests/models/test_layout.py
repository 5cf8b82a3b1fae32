"""models/components/layout.py: the one layout rule of training, testing, predict and benchmarks."""

from __future__ import annotations

import pytest

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.layout import channels_last_on


def test_auto_is_channels_last_on_the_cpu_only_and_true_false_hold_everywhere():
    assert [channels_last_on("auto", d) for d in ("cpu", "cuda", "mps")] == [True, False, False]
    assert [channels_last_on(True, d) for d in ("cpu", "cuda")] == [True, True]
    assert [channels_last_on(False, d) for d in ("cpu", "cuda")] == [False, False]


def test_any_other_value_is_one_error_naming_the_setting():
    with pytest.raises(UserError, match=r"^model.channels_last=sometimes must be true, false or auto.$"):
        channels_last_on("sometimes", "cpu")
    with pytest.raises(UserError, match=r"^channels_last=yes must be"):
        channels_last_on("yes", "cpu", key="channels_last")
