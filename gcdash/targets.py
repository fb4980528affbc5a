"""Target policies: which class each heatmap explains. A map's class is part of its cache key."""

from __future__ import annotations

from dataclasses import dataclass

from gcdash.registry import Registry


@dataclass(frozen=True)
class TargetPolicy:
    """``clean`` and ``adv`` name the class source of the clean and the adversarial map: ``own`` (the top-1 of
    that map's own input), ``clean`` (the clean image's top-1) or ``label`` (the true label)."""

    name: str
    clean: str
    adv: str
    description: str


TARGETS: Registry[TargetPolicy] = Registry("target policy")
for _policy in (
    TargetPolicy("pred", "own", "own", "each map explains its own input's top-1 class (the paper's setting)"),
    TargetPolicy("clean-pred", "own", "clean", "both maps explain the clean image's top-1 class"),
    TargetPolicy("label", "label", "label", "both maps explain the true label"),
):
    TARGETS.add(_policy.name, _policy)


def names() -> list[str]:
    return TARGETS.names()
