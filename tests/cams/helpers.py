"""Helpers shared by the CAM tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest absolute difference between two ``{layer: maps}`` results over the same layers."""
    assert list(a) == list(b)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def one_by_one(fn, x: torch.Tensor) -> dict[str, np.ndarray]:
    """``fn`` applied to each image alone, results concatenated back into a batch."""
    parts = [fn(x[i : i + 1]) for i in range(len(x))]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class ModelState:
    """Everything a CAM call must leave as it was (pytorch-grad-cam's test_svd_no_side_effect, for models)."""

    modules: list[tuple[str, int, bool]]
    params: dict[str, torch.Tensor]
    requires_grad: dict[str, bool]
    grads: dict[str, bool]
    hooks: int

    @classmethod
    def of(cls, net: nn.Module) -> ModelState:
        return cls(
            modules=[(name, id(m), m.training) for name, m in net.named_modules()],
            params={k: v.detach().clone() for k, v in net.state_dict().items()},
            requires_grad={k: p.requires_grad for k, p in net.named_parameters()},
            grads={k: p.grad is not None for k, p in net.named_parameters()},
            hooks=sum(
                len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules()
            ),
        )

    def assert_same(self, net: nn.Module) -> None:
        now = ModelState.of(net)
        assert now.modules == self.modules, "modules replaced or train/eval flags changed"
        assert now.requires_grad == self.requires_grad
        assert not any(now.grads.values()), "a parameter .grad was written"
        assert now.hooks == self.hooks, "a hook was left on the model"
        assert now.params.keys() == self.params.keys()
        for k, v in self.params.items():
            assert torch.equal(now.params[k], v), f"{k} changed"
