"""PGD against FGSM (its one-step case), an independent implementation (ART), and itself (seeding, strength)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gcdash import attacks

EPS = [2 / 255, 8 / 255, 0.05]


@pytest.mark.parametrize("eps", EPS)
def test_one_step_of_size_eps_without_random_start_is_fgsm_exactly(tiny_handle, batch, eps):
    x, y = batch
    pgd = attacks.attack("pgd", tiny_handle.net, x, y, eps, steps=1, step_size=eps, random_start=False)
    assert torch.equal(pgd, attacks.fgsm(tiny_handle.net, x, y, eps))


@pytest.mark.parametrize("eps, steps", [(8 / 255, 10), (0.05, 5)])
def test_equals_the_adversarial_robustness_toolbox_without_random_start(tiny_handle, batch, eps, steps):
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    x, y = batch
    classifier = PyTorchClassifier(
        model=tiny_handle.net, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=5,
        clip_values=(0.0, 1.0), device_type="cpu",
    )  # fmt: skip
    step = 2.5 * eps / steps
    art = ProjectedGradientDescentPyTorch(
        classifier, norm=np.inf, eps=eps, eps_step=step, max_iter=steps, num_random_init=0, batch_size=64,
        verbose=False,
    )  # fmt: skip
    expected = torch.from_numpy(art.generate(x.numpy(), y.numpy()))
    ours = attacks.attack("pgd", tiny_handle.net, x, y, eps, steps=steps, random_start=False)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_random_start_is_reproducible_and_independent_of_batching(tiny_handle, batch):
    x, y = batch
    run = lambda xs, ys, seed=0: attacks.attack("pgd", tiny_handle.net, xs, ys, 8 / 255, steps=2, seed=seed)  # noqa: E731
    together = run(x, y)
    assert torch.equal(together, run(x, y))
    alone = torch.cat([run(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-6)
    assert not torch.equal(run(x, y, seed=1), together)


def test_ten_steps_raise_the_loss_at_least_as_much_as_fgsm_on_most_images(tiny_handle, batch):
    x, y = batch
    loss = lambda adv: F.cross_entropy(tiny_handle.net(adv), y, reduction="none")  # noqa: E731
    with torch.no_grad():
        fgsm = loss(attacks.fgsm(tiny_handle.net, x, y, 8 / 255))
        pgd = loss(attacks.attack("pgd", tiny_handle.net, x, y, 8 / 255))
    assert (pgd >= fgsm - 1e-6).float().mean() >= 0.75
    assert pgd.mean() > fgsm.mean()
