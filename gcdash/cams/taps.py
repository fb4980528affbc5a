"""One forward (+ one backward) pass that records every requested layer's activation and gradient.

This is what makes per-layer analysis cheap: the cost is one pass per batch whatever the number of layers.
Gradients come from ``torch.autograd.grad`` with respect to the recorded outputs, so the model's parameters
never receive a ``.grad`` (pytorch-grad-cam's own ``forward`` zeroes and fills them, which would disturb a model
shared between dashboard sessions), and each gradient is matched to its layer by name, not by call order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gcdash.errors import GcdashError
from gcdash.models.grids import feature_map
from gcdash.models.handle import eval_mode

Targets = torch.Tensor | Sequence[int] | None
#: A second loss on the same forward: logits → a scalar whose gradient with respect to the input is wanted (the
#: attack's, :meth:`gcdash.attacks.Attack.from_gradient`), or None when it is not wanted after all.
InputLoss = Callable[[torch.Tensor], torch.Tensor | None]


@dataclass
class Tap:
    """What one pass saw: logits (N, C), the class explained per input, and per-layer tensors (detached);
    ``input_grad`` the gradient of an :data:`InputLoss` with respect to the input, when one was asked for."""

    logits: torch.Tensor
    targets: torch.Tensor
    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor] | None
    input_grad: torch.Tensor | None = None


def as_targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
    """``None`` → each input's own top-1 class; otherwise one class index per input, checked."""
    if targets is None:
        return logits.argmax(dim=1)
    tgt = torch.as_tensor(targets, dtype=torch.long, device=logits.device).reshape(-1)
    if tgt.numel() != logits.shape[0]:
        raise GcdashError(f"got {tgt.numel()} targets for {logits.shape[0]} images")
    if tgt.numel() and (tgt.min() < 0 or tgt.max() >= logits.shape[1]):
        raise GcdashError(f"target classes must lie in [0, {logits.shape[1] - 1}]")
    return tgt


def _recorder(name: str, store: dict[str, torch.Tensor]):
    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        if name in store:
            raise GcdashError(f"layer {name!r} runs more than once per forward pass; choose a block that runs once")
        if not isinstance(output, torch.Tensor) or output.ndim not in (3, 4):
            raise GcdashError(
                f"layer {name!r} does not output a feature map (N, C, h, w) or tokens (N, tokens, C); choose a block"
            )
        store[name] = output

    return hook


def tap(
    net: nn.Module,
    x: torch.Tensor,
    modules: Mapping[str, nn.Module],
    targets: Targets = None,
    gradients: bool = True,
    input_loss: InputLoss | None = None,
) -> Tap:
    """Run ``net`` on ``x`` once, recording ``modules``' outputs and, if ``gradients``, ``∂S_c/∂A`` for each,
    where ``S_c`` is the pre-softmax score of the target class ``c`` of each input. Token and channels-last outputs
    are given as (N, C, h, w) feature maps (:func:`gcdash.models.grids.feature_map`), their gradients alike.
    ``input_loss`` adds a second backward pass on the same forward: ``∇x input_loss(logits)`` in ``input_grad``
    (the same numbers as a forward and backward of its own)."""
    recorded: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_hook(_recorder(name, recorded)) for name, module in modules.items()]
    try:
        with eval_mode(net), torch.set_grad_enabled(gradients):
            # The input requires grad so activations join the graph even when the weights are frozen.
            xg = x.detach().requires_grad_(gradients)
            logits = net(xg)
            chosen = as_targets(targets, logits)
            missing = [name for name in modules if name not in recorded]
            if missing:
                raise GcdashError(f"layer {missing[0]!r} never ran in the forward pass")
            loss = input_loss(logits) if gradients and input_loss is not None else None
            outputs = [recorded[name] for name in modules]
            grads = _gradients(logits, chosen, outputs, retain=loss is not None) if gradients else None
            input_grad = None if loss is None else torch.autograd.grad(loss, xg)[0].detach()
    finally:
        for handle in handles:
            handle.remove()
    names, size = list(modules), (x.shape[-2], x.shape[-1])
    activations = {name: feature_map(name, recorded[name].detach(), net, size) for name in names}
    if grads is not None:
        grads = [feature_map(name, g, net, size) for name, g in zip(names, grads)]
        _refuse_unreached(names, [activations[n] for n in names], grads)
    return Tap(
        logits=logits.detach(),
        targets=chosen.detach(),
        activations=activations,
        gradients=None if grads is None else dict(zip(names, grads)),
        input_grad=input_grad,
    )


def _refuse_unreached(names: Sequence[str], acts: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
    """A live layer (some activation non-zero) whose gradient is zero at every position of every input would give
    blank maps: refused, named (a ViT's last block, whose patch tokens reach the head only through the class token;
    an output that does not reach the class score). A dead layer (all activations zero) is not refused here: its
    maps are all-zero and the rows say so."""
    unreached = [n for n, a, g in zip(names, acts, grads) if g.numel() and not bool(g.any()) and bool(a.any())]
    if len(names) > 1 and len(unreached) == len(names):
        raise GcdashError(
            f"the class score has no gradient at any of the {len(names)} layers asked for, so every map would be "
            "blank: the model's head does not depend on its input (random weights with a zero-initialised head, as "
            "torchvision's ViT has?)"
        )
    if unreached:
        name = unreached[0]
        raise GcdashError(
            f"layer {name!r} gets no gradient from the class score (zero at every position), so its map would be "
            "blank; choose an earlier layer (for a ViT's last block, its first norm: '<block>.norm1')"
        )


def _gradients(
    logits: torch.Tensor, targets: torch.Tensor, outputs: list[torch.Tensor], retain: bool = False
) -> list[torch.Tensor]:
    score = logits.gather(1, targets[:, None]).sum()
    grads = torch.autograd.grad(score, outputs, allow_unused=True, retain_graph=retain)
    return [torch.zeros_like(o) if g is None else g.detach() for o, g in zip(outputs, grads)]
