"""The noise control: exactly eps on every unclipped pixel, random signs, the same for any model and batching."""

import torch

from gcdash import attacks, models


def test_every_unclipped_pixel_moves_by_exactly_eps(batch):
    x, _ = batch
    eps = 8 / 255
    adv = attacks.attack("noise", None, x, None, eps)
    inside = (x + eps < 1) & (x - eps > 0)
    moved = (adv - x)[inside].abs()
    torch.testing.assert_close(moved, torch.full_like(moved, eps), rtol=0, atol=1e-6)
    signs = torch.sign(adv - x)[inside]
    assert 0.45 < (signs > 0).float().mean() < 0.55  # a fair coin per pixel


def test_the_same_for_any_model_and_any_batching(tiny_handle, batch):
    x, y = batch
    other = models.load("tiny-cnn2").net
    ours = attacks.attack("noise", tiny_handle.net, x, y, 4 / 255)
    assert torch.equal(ours, attacks.attack("noise", other, x, None, 4 / 255))
    assert torch.equal(ours, attacks.attack("noise", None, x, None, 4 / 255))
    alone = torch.cat([attacks.attack("noise", None, x[i : i + 1], None, 4 / 255) for i in range(len(x))])
    assert torch.equal(alone, ours)
    assert not torch.equal(attacks.attack("noise", None, x, None, 4 / 255, seed=1), ours)


def test_no_model_pass(batch):
    class Refuses(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("the noise control looked at the model")

    attacks.attack("noise", Refuses(), batch[0], None, [2 / 255, 8 / 255])
