"""``eval_mode``: the network runs in eval mode and every module's training flag comes back as it was."""

import pytest
from torch import nn

from gcdash.models.handle import eval_mode


def _net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    net.train()
    net[2].eval()  # a mix of flags
    return net


def test_eval_mode_runs_in_eval_and_restores_every_flag_even_those_the_body_changed():
    net = _net()
    before = [m.training for m in net.modules()]
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
        net.train()  # the body flips them all
    assert [m.training for m in net.modules()] == before


def test_eval_mode_restores_the_flags_when_the_body_fails():
    net = _net()
    before = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("a pass failed")
    assert [m.training for m in net.modules()] == before
