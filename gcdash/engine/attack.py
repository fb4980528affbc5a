"""The attack as one model's engine sees it: which label each image's attack ascends, the attack's part of each
variant key, and the attacked images, read from their cached states (FGSM's direction, PGD's image, the noise's
signs) or computed once. A transfer attack crafts its states on ``source``; the noise control on nothing, so its
states are shared by every model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gcdash import attacks, keys
from gcdash import precision as precisions
from gcdash.config import AttackConfig
from gcdash.engine.batch import Batch
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.store import Store


class Adversary:
    """``attack`` against ``handle``, crafted on ``source`` (None: ``handle`` itself), its states in ``store``.
    ``passes`` counts the attack's image-passes (PGD's 10 steps on 8 images count 80); ``shared`` the images whose
    state was taken from the clean CAM pass's forward (a backward pass only: :meth:`clean_gradient`)."""

    def __init__(self, handle: ModelHandle, store: Store, attack: AttackConfig, source: ModelHandle | None) -> None:
        self.handle, self.store = handle, store
        self.attack = attacks.get(attack.name)
        source = checked_source(handle, source) if self.attack.uses_model else None
        at = precisions.get(handle.precision).attack or handle.precision  # a "-cam" precision attacks at fp32
        self.source = None if source is None else source.at_precision(at)
        self.own = handle.at_precision(at)  # the attacked model as its own attack runs it
        self.params = self.attack.bind(self.crafter, self.attack.params(**dict(attack.params)))
        self.key = self.attack.key(self.params)
        self.passes = self.shared = 0

    @property
    def rides_on_clean_pass(self) -> bool:
        """Whether the states come from the attacked model's clean gradient alone (FGSM, not a transfer): then the
        clean CAM pass's forward serves them too (:meth:`clean_gradient`)."""
        return self.attack.gradient_state and self.source is None and self.own is self.handle

    @property
    def crafter(self) -> ModelHandle:
        return self.source or self.own

    def labels(self, labels: np.ndarray, clean_pred: np.ndarray) -> np.ndarray:
        """The label each image's attack ascends: the true one when known, else the clean prediction (the attacked
        model's, already computed; a transfer source resolves its own, marked −1)."""
        labels = labels.astype(np.int64)
        return labels if self.source is not None else np.where(labels >= 0, labels, clean_pred)

    def variant_attacks(self, batch: Batch) -> list[list]:
        """Each image's attack as its variant key names it: the attack, who crafted it, the label it ascended
        (the batch's clean logits must be known)."""
        if not self.attack.uses_model:
            return [[self.key]] * len(batch)
        who = "self" if self.source is None else self.source.digest
        return [[self.key, who, int(label)] for label in self.labels(batch.labels, batch.pred(0.0))]

    def _state_keys(self, hashes: Sequence[str], ascended: np.ndarray | None, eps: float) -> list[str]:
        crafter = self.crafter.digest if self.attack.uses_model else None
        state_eps = float(eps) if self.attack.per_eps else None
        labels = [None] * len(hashes) if ascended is None else [int(v) for v in ascended]
        return [keys.state(crafter, h, [self.key, y], state_eps) for h, y in zip(hashes, labels)]

    def images(self, batch: Batch, eps: float, idx: Sequence[int]) -> torch.Tensor:
        """The attacked images ``idx`` of ``batch`` at ``eps``, computing missing states once."""
        idx = list(idx)
        x, labels, clean_pred = batch.x[idx], batch.labels[idx], batch.pred(0.0)[idx]
        ascended = self.labels(labels, clean_pred) if self.attack.uses_model else None
        state_keys = self._state_keys([batch.hashes[i] for i in idx], ascended, eps)
        found = self.store.get_arrays(state_keys)
        todo = [j for j, k in enumerate(state_keys) if k not in found]
        if todo:
            y = None if ascended is None else torch.from_numpy(ascended[todo])
            found.update(self._new_states(x[todo], y, eps, [state_keys[j] for j in todo]))
        state = torch.from_numpy(np.stack([found[k] for k in state_keys])).to(x.dtype)
        return self.attack.apply(x, state, eps)

    def clean_gradient(self, batch: Batch, idx: Sequence[int]) -> CleanGradient | None:
        """The attack's loss on the clean CAM pass of images ``idx``, to take their missing states from its forward
        (None where the attack does not ride on that pass)."""
        return CleanGradient(self, batch, list(idx)) if self.rides_on_clean_pass else None

    def _new_states(self, x: torch.Tensor, y: torch.Tensor | None, eps: float, state_keys: list[str]) -> dict:
        crafter = self.crafter
        with crafter.lock:
            state = self.attack.state(
                crafter.net, x.to(self.handle.device), y, eps if self.attack.per_eps else None, **self.params
            )
        self.passes += self.attack.passes(1, self.params) * len(x)
        return self._keep(state, state_keys, crafter)

    def _keep(self, state: torch.Tensor, state_keys: Sequence[str], crafter: ModelHandle) -> dict:
        """Store new states (refused whole if any is not finite), as the store keeps them."""
        if not torch.isfinite(state).all():
            raise GcdashError(
                f"attack {self.attack.name} on model {crafter.name} gave non-finite perturbations (NaN or inf): "
                "are its weights broken? Nothing of them was stored"
            )
        new = {k: state[n].cpu().to(self.attack.stored_dtype).numpy() for n, k in enumerate(state_keys)}
        self.store.put_arrays(new, "attack", crafter.owner if self.attack.uses_model else "(any model)")
        return new


class CleanGradient:
    """The attack's loss ``Σ_i CE(f(x_i), y_i)`` on the logits of the clean CAM pass of images ``idx`` of
    ``batch`` (``y`` as :meth:`Adversary.labels` picks it, from those logits), for
    :meth:`gcdash.attacks.Attack.from_gradient`: called with the logits, it returns the loss, or None when every
    state is cached already (no second backward pass); :meth:`keep` stores the states from the input gradient."""

    def __init__(self, adversary: Adversary, batch: Batch, idx: list[int]) -> None:
        self.adversary, self.batch, self.idx = adversary, batch, idx
        self.missing: list[int] = []
        self.state_keys: list[str] = []

    def __call__(self, logits: torch.Tensor) -> torch.Tensor | None:
        adversary, idx = self.adversary, self.idx
        pred = logits.detach().float().argmax(dim=1).cpu().numpy()
        ascended = adversary.labels(self.batch.labels[idx], pred)
        self.state_keys = adversary._state_keys([self.batch.hashes[i] for i in idx], ascended, 0.0)
        found = adversary.store.get_arrays(self.state_keys)
        self.missing = [j for j, k in enumerate(self.state_keys) if k not in found]
        if not self.missing:
            return None
        return F.cross_entropy(logits, torch.from_numpy(ascended).to(logits.device), reduction="sum")

    def keep(self, input_grad: torch.Tensor | None) -> None:
        """Store the missing states from ``∇x`` of the loss (None: the loss was not needed)."""
        if input_grad is None or not self.missing:
            return
        adversary = self.adversary
        state = adversary.attack.from_gradient(input_grad[self.missing], **adversary.params)
        adversary._keep(state, [self.state_keys[j] for j in self.missing], adversary.crafter)
        adversary.shared += len(self.missing)


def checked_source(handle: ModelHandle, source: ModelHandle | None) -> ModelHandle | None:
    """A transfer source must take the same images and name the same classes; the model itself is no transfer."""
    if source is None or source.weights == handle.weights:  # the same weights at any precision: no transfer
        return None
    if tuple(source.input_size) != tuple(handle.input_size) or source.crop != handle.crop:
        raise GcdashError(
            f"source model {source.name} takes {source.input_size[0]}×{source.input_size[1]} images, {handle.name} "
            f"{handle.input_size[0]}×{handle.input_size[1]}: a transfer attack needs the same input"
        )
    if list(source.class_names) != list(handle.class_names):
        raise GcdashError(f"source model {source.name} names other classes than {handle.name}")
    return source
