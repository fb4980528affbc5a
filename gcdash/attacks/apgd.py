"""APGD, L∞ (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020): the step-size-free PGD that AutoAttack and RobustBench report, with the
cross-entropy loss (APGD-CE) or the difference-of-logits-ratio loss (APGD-DLR)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gcdash.attacks.base import IterativeAttack, require_counts
from gcdash.errors import GcdashError
from gcdash.models.handle import eval_mode
from gcdash.seeding import per_image_uniform

RHO = 0.75  # the share of improving steps below which the step size halves (Croce & Hein's ρ)
MOMENTUM = 0.75  # α of the momentum step


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy ``CE(z, y)``."""
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image DLR loss ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e−12)``, ``π`` the classes by decreasing
    logit: invariant to shifts and scales of the logits, so a saturated softmax cannot mask the gradient."""
    if logits.shape[1] < 3:
        raise GcdashError(f"the DLR loss reads the third-largest logit: it needs 3 classes, not {logits.shape[1]}")
    ordered, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, y[:, None])[:, 0]
    top_is_true = (logits.argmax(dim=1) == y).float()
    other = ordered[:, 1] * top_is_true + ordered[:, 0] * (1 - top_is_true)  # the largest logit of another class
    return -(true - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


LOSSES = {"ce": ce_loss, "dlr": dlr_loss}


def _losses_and_gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss) -> tuple:
    """Per-image losses, predictions and ``∇x Σ loss`` at ``x`` (no parameter's ``.grad`` is written)."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        logits = net(xg)
        per_image = loss(logits, y)
        (grad,) = torch.autograd.grad(per_image.sum(), xg)
    return per_image.detach(), logits.detach().argmax(dim=1), grad.detach()


def _oscillating(history: torch.Tensor, i: int, k: int) -> torch.Tensor:
    """Croce & Hein's condition 1: in the last ``k`` steps, the loss rose in at most ``ρ·k`` of them."""
    rises = sum((history[i - j] > history[i - j - 1]).float() for j in range(k) if i - j - 1 >= 0)
    return torch.as_tensor(rises, device=history.device) <= k * RHO


def apgd(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, loss: str = "ce", seed: int = 0,
    trace: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """One run of APGD from a random start of the eps ball (seeded per image): returns per image the point to
    report, whether it fools ``net`` and the highest loss reached. The point is the last iterate that fooled it where
    one did, else the iterate of highest loss (never the clean image: what the explanation is compared on for a
    robust image).
    ``trace`` (a list) receives each iterate's per-image loss, for tests.

    Step size ``η`` starts at ``2·eps``; ``z = Π(x_k + η·sign(∇loss))``, ``x_{k+1} = Π(x_k + α(z − x_k) +
    (1 − α)(x_k − x_{k−1}))`` with ``α = 0.75`` (1 at the first step); at checkpoints (after 22% of the steps, then
    at shrinking intervals, at least 6%), an image's ``η`` halves and it restarts from its best point when its loss
    rose in at most ρ = 75% of the steps since the last checkpoint, or when ``η`` did not change and its best loss
    did not improve since then (Croce & Hein's conditions 1 and 2).
    """
    fn = LOSSES[loss]
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    start = per_image_uniform(x, seed)
    start = start / start.flatten(1).abs().amax(dim=1).clamp(min=1e-12).view(-1, *[1] * (x.ndim - 1))
    adv = torch.minimum(torch.maximum(x + eps * start, lo), hi)
    step = torch.full((len(x), *[1] * (x.ndim - 1)), 2.0 * eps, device=x.device, dtype=x.dtype)
    losses, pred, grad = _losses_and_gradient(net, adv, y, fn)
    fooled = pred != y
    best, best_loss, best_grad, fooling = adv.clone(), losses.clone(), grad.clone(), adv.clone()
    history = torch.zeros(steps, len(x), device=x.device)
    k, interval, decrease, minimum = 0, max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    last_best, last_reduced = best_loss.clone(), torch.ones_like(best_loss, dtype=torch.bool)
    previous = adv.clone()
    for i in range(steps):
        momentum = MOMENTUM if i > 0 else 1.0
        z = torch.minimum(torch.maximum(adv + step * grad.sign(), lo), hi)
        moved = adv + momentum * (z - adv) + (1 - momentum) * (adv - previous)
        previous, adv = adv, torch.minimum(torch.maximum(moved, lo), hi)
        losses, pred, grad = _losses_and_gradient(net, adv, y, fn)
        history[i] = losses
        if trace is not None:
            trace.append(losses.clone())
        now = pred != y
        fooling[now] = adv[now]
        fooled |= now
        better = losses > best_loss
        best[better], best_loss[better], best_grad[better] = adv[better], losses[better], grad[better]
        k += 1
        if k == interval:
            halve = _oscillating(history, i, interval) | (~last_reduced & (last_best >= best_loss))
            last_reduced, last_best = halve.clone(), best_loss.clone()
            step[halve] /= 2.0
            adv[halve], grad[halve] = best[halve], best_grad[halve]
            k, interval = 0, max(interval - decrease, minimum)
    return torch.where(fooled.view(-1, *[1] * (x.ndim - 1)), fooling, best), fooled, best_loss


class Apgd(IterativeAttack):
    """APGD (Croce & Hein, ICML 2020) in the L∞ ball of radius eps, ``restarts`` runs from seeded random starts
    (a run only for the images no earlier run fooled); each image keeps the point of :func:`apgd` (a fooling one,
    else its highest-loss iterate) of its best run. ``(steps + 1)·restarts`` gradient passes per image and eps."""

    paper = "Croce & Hein, ICML 2020"
    loss: ClassVar[str] = "ce"
    defaults: ClassVar[dict[str, Any]] = {"steps": 100, "restarts": 1, "seed": 0}
    hints: ClassVar[dict[str, str]] = {
        "steps": "iterations per run (AutoAttack: 100)",
        "restarts": "runs from other random starts, for the images not fooled yet",
        "seed": "seed of the random starts",
    }

    def check(self, params: dict[str, Any]) -> None:
        require_counts(self.name, params, "steps", "restarts")

    def passes(self, n_eps: int, params: dict[str, Any]) -> int:
        return (int(params["steps"]) + 1) * int(params["restarts"]) * n_eps

    def run(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **params: Any) -> torch.Tensor:
        with eval_mode(net):
            steps, seed = int(params["steps"]), int(params["seed"])
            out, fooled, best = apgd(net, x, y, eps, steps, self.loss, seed)
            for restart in range(1, int(params["restarts"])):
                todo = (~fooled).nonzero()[:, 0]
                if not len(todo):
                    break
                again, hit, loss = apgd(net, x[todo], y[todo], eps, steps, self.loss, seed + restart)
                keep = hit | (loss > best[todo])  # fooled now, or a higher loss than any run before
                out[todo[keep]], fooled[todo[hit]], best[todo[keep]] = again[keep], True, loss[keep]
        return out


class ApgdCe(Apgd):
    """APGD on the cross-entropy loss (AutoAttack's first attack)."""

    name, label, loss = "apgd-ce", "APGD-CE (L∞)", "ce"


class ApgdDlr(Apgd):
    """APGD on the difference-of-logits-ratio loss (AutoAttack's; robust to a softmax that saturates)."""

    name, label, loss = "apgd-dlr", "APGD-DLR (L∞)", "dlr"
