"""FGSM guarantees: the L∞ ball, the pixel box, eps = 0, one gradient for many eps, no side effects."""

import pytest
import torch
import torch.nn.functional as F

from gcdash import attacks
from gcdash.errors import GcdashError


def test_fgsm_stays_in_the_eps_ball_and_the_pixel_box(tiny_handle, batch):
    x, y = batch
    for eps in (1 / 255, 8 / 255, 0.5):
        adv = attacks.fgsm(tiny_handle.net, x, y, eps)
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1


def test_fgsm_is_the_formula(tiny_handle, batch):
    x, y = batch
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(tiny_handle.net(xg), y).backward()
    expected = (x + 4 / 255 * xg.grad.sign()).clamp(0, 1)
    torch.testing.assert_close(attacks.fgsm(tiny_handle.net, x, y, 4 / 255), expected)


def test_eps_zero_returns_x_unchanged(tiny_handle, batch):
    x, y = batch
    assert torch.equal(attacks.fgsm(tiny_handle.net, x, y, 0.0), x)


def test_loss_rises_for_most_inputs_at_8_over_255(tiny_handle, batch):
    x, y = batch
    adv = attacks.fgsm(tiny_handle.net, x, y, 8 / 255)
    with torch.no_grad():
        before = F.cross_entropy(tiny_handle.net(x), y, reduction="none")
        after = F.cross_entropy(tiny_handle.net(adv), y, reduction="none")
    assert (after > before).float().mean() >= 0.9


def test_sequence_of_eps_uses_one_gradient(tiny_handle, batch):
    x, y = batch
    calls = []
    hook = tiny_handle.net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        stacked = attacks.fgsm(tiny_handle.net, x, y, [0.0, 2 / 255, 8 / 255])
    finally:
        hook.remove()
    assert calls == [len(x)]
    assert stacked.shape == (3, *x.shape)
    torch.testing.assert_close(stacked[2], attacks.fgsm(tiny_handle.net, x, y, 8 / 255))
    assert torch.equal(stacked[0], x)


def test_y_none_attacks_the_clean_prediction(tiny_handle, batch):
    x, _ = batch
    with torch.no_grad():
        pred = tiny_handle.net(x).argmax(1)
    with_pred = attacks.fgsm(tiny_handle.net, x, pred, 0.03)
    torch.testing.assert_close(attacks.fgsm(tiny_handle.net, x, None, 0.03), with_pred)


def test_model_is_left_as_it_was(tiny_handle, batch):
    x, y = batch
    net = tiny_handle.net
    net.train()
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    first = next(net.parameters())
    first.grad = torch.full_like(first, 7.0)
    attacks.fgsm(net, x, y, [2 / 255, 8 / 255])
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(p, params[n]) for n, p in net.named_parameters())
    assert torch.equal(first.grad, torch.full_like(first, 7.0))
    assert all(p.grad is None for p in list(net.parameters())[1:])
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), [0.1, -1]])
def test_bad_eps_is_a_clear_error(tiny_handle, batch, bad):
    with pytest.raises(GcdashError, match="eps"):
        attacks.fgsm(tiny_handle.net, batch[0], batch[1], bad)


def test_inputs_outside_pixel_space_are_refused(tiny_handle, batch):
    with pytest.raises(GcdashError, match=r"\[0, 1\]"):
        attacks.fgsm(tiny_handle.net, batch[0] * 3 - 1, batch[1], 0.1)
