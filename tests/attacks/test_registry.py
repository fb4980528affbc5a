"""Every registered attack: shapes, the L∞ ball and pixel box, eps = 0, no side effects, errors, transfer."""

import pytest
import torch

from gcdash import attacks
from gcdash.errors import GcdashError

EPS = [0.0, 2 / 255, 8 / 255]
FAST = {"pgd": {"steps": 3}}  # keep PGD's steps low: these tests check contracts, not strength


def _attack(name, net, x, y, eps, **params):
    return attacks.attack(name, net, x, y, eps, **{**FAST.get(name, {}), **params})


def test_the_registry_lists_the_shipped_attacks():
    assert attacks.names()[:3] == ["fgsm", "pgd", "noise"]
    with pytest.raises(GcdashError, match="unknown attack 'nope'; choose from: fgsm, pgd, noise"):
        attacks.get("nope")


@pytest.mark.parametrize("name", attacks.names())
def test_shapes_ball_box_and_eps_zero(name, tiny_handle, batch):
    x, y = batch
    one = _attack(name, tiny_handle.net, x, y, 8 / 255)
    stacked = _attack(name, tiny_handle.net, x, y, EPS)
    assert one.shape == x.shape and stacked.shape == (len(EPS), *x.shape)
    torch.testing.assert_close(stacked[2], one)
    assert torch.equal(stacked[0], x)
    for eps, adv in zip(EPS, stacked):
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("name", attacks.names())
def test_the_network_is_left_as_it_was(name, tiny_handle, batch):
    net = tiny_handle.net
    net.train()
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    _attack(name, net, *batch, [2 / 255, 8 / 255])
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(p, params[n]) and p.grad is None for n, p in net.named_parameters())


@pytest.mark.parametrize("name", attacks.names())
def test_cost_is_stated_in_passes(name):
    attack = attacks.get(name)
    params = attack.params()
    assert attack.passes(5, params) >= attack.passes(1, params) >= 0
    assert "pass" in attack.cost()


def test_costs_in_passes():
    fgsm, pgd, noise = (attacks.get(n) for n in ("fgsm", "pgd", "noise"))
    assert [fgsm.passes(5, fgsm.params()), pgd.passes(5, pgd.params()), noise.passes(5, noise.params())] == [1, 50, 0]


def test_bad_parameters_name_the_problem(tiny_handle, batch):
    with pytest.raises(GcdashError, match="pgd has no parameter 'stpes'; it takes"):
        attacks.attack("pgd", tiny_handle.net, *batch, 0.1, stpes=3)
    with pytest.raises(GcdashError, match="steps must be ≥ 1"):
        attacks.attack("pgd", tiny_handle.net, *batch, 0.1, steps=0)
    with pytest.raises(GcdashError, match="noise has no parameter 'source'"):
        attacks.attack("noise", None, *batch, 0.1, source="tiny-cnn2")


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_source_crafts_the_perturbation_on_another_model(name, tiny_handle, batch):
    from gcdash import models

    x, y = batch
    other = models.load("tiny-cnn2").net
    transfer = _attack(name, tiny_handle.net, x, y, 8 / 255, source="tiny-cnn2")
    torch.testing.assert_close(transfer, _attack(name, other, x, y, 8 / 255), rtol=0, atol=0)
    assert not torch.equal(transfer, _attack(name, tiny_handle.net, x, y, 8 / 255))


def test_unlabelled_images_are_attacked_on_the_clean_prediction(tiny_handle, batch):
    x, y = batch
    pred = tiny_handle.net(x).argmax(1)
    mixed = torch.where(torch.arange(len(y)) % 2 == 0, y, torch.full_like(y, -1))
    expected = torch.where(torch.arange(len(y)) % 2 == 0, y, pred)
    got = attacks.attack("fgsm", tiny_handle.net, x, mixed, 4 / 255)
    assert torch.equal(got, attacks.attack("fgsm", tiny_handle.net, x, expected, 4 / 255))
