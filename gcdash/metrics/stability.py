"""Stability of an explanation under a perturbation of its input, as the field reports it, one perturbation at a time
(batched in torch, float64). With ``e``/``e'`` the maps of ``x``/``x'`` and ``h``/``h'`` the logits:

- RIS, relative input stability (Agarwal et al., "Rethinking stability for attribution-based explanations",
  2022): ``‖(e − e') / ẽ‖ / ‖(x − x') / x̃‖``;
- ROS, relative output stability (the same paper): ``‖(e − e') / ẽ‖ / ‖h − h'‖``;
- Max-Sensitivity (Yeh et al., "On the (in)fidelity and sensitivity of explanations", NeurIPS 2019):
  ``‖e − e'‖ / ‖e‖``, the maximum over the perturbations tried;

``‖·‖`` the Frobenius norm of each item, ``ṽ = v + [v = 0]·ε_min`` and a zero denominator replaced by ``ε_min``
(ε_min = 1e-6), exactly as Quantus 0.6 computes them (``RelativeInputStability``, ``RelativeOutputStability``,
``MaxSensitivity``: the test reference). RIS and ROS are NaN where ``x'`` changes the top-1 (Quantus's default:
the stability of an explanation is asked of inputs the model treats alike); Max-Sensitivity is NaN only for an
all-zero clean map, which it divides by. (The engine's ``stability`` scorer also leaves out a pair whose attacked map
is all zero, as MOD does: no explanation is not a measure of how far one moved.) A sweep's perturbation at each
eps is one sample: the per-image maximum over perturbations is the maximum over the eps (or attacks) a sweep tried.
"""

from __future__ import annotations

import torch

EPS_MIN = 1e-6  # Quantus's ε_min


def _norm(v: torch.Tensor) -> torch.Tensor:
    """The Frobenius norm of each item of a batch (N, ...) → (N,)."""
    return v.flatten(1).norm(dim=1)


def _relative(v: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``v / (base + [base = 0]·ε_min)``."""
    return v / (base + (base == 0) * EPS_MIN)


def _nonzero(d: torch.Tensor) -> torch.Tensor:
    return d + (d == 0) * EPS_MIN


def explanation_change(e: torch.Tensor, e_adv: torch.Tensor) -> torch.Tensor:
    """RIS's and ROS's numerator, ``‖(e − e') / ẽ‖`` (N,)."""
    e, e_adv = e.double(), e_adv.double()
    return _norm(_relative(e - e_adv, e))


def ris(
    x: torch.Tensor, x_adv: torch.Tensor, e: torch.Tensor, e_adv: torch.Tensor, changed: torch.Tensor
) -> torch.Tensor:
    """Relative input stability of each pair (N,); NaN where ``changed`` (the top-1 moved)."""
    x, x_adv = x.double(), x_adv.double()
    value = explanation_change(e, e_adv) / _nonzero(_norm(_relative(x - x_adv, x)))
    return torch.where(changed.to(value.device), torch.nan, value)


def ros(
    h: torch.Tensor, h_adv: torch.Tensor, e: torch.Tensor, e_adv: torch.Tensor, changed: torch.Tensor
) -> torch.Tensor:
    """Relative output stability of each pair (N,) from the logits ``h``, ``h'``; NaN where ``changed``."""
    value = explanation_change(e, e_adv) / _nonzero(_norm(h.double() - h_adv.double()))
    return torch.where(changed.to(value.device), torch.nan, value)


def sensitivity(e: torch.Tensor, e_adv: torch.Tensor) -> torch.Tensor:
    """``‖e − e'‖ / ‖e‖`` of each pair (N,) (one sample of Max-Sensitivity); NaN for an all-zero ``e``."""
    e, e_adv = e.double(), e_adv.double()
    base = _norm(e)
    return torch.where(base > 0, _norm(e - e_adv) / base.clamp(min=1e-300), torch.nan)
