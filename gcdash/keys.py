"""Every cache key in one place. A key names everything its value depends on, so a changed input is a miss.

Keys are built in two steps: one digest per (image, variant) — the model's weights, the preprocessed image and
how it was perturbed (clean, or attack + parameters + the model that crafted it + the label it ascended + eps) —
computed once per batch; cells under it (logits, each layer's map) extend it with a few plain strings.

- ``variant``: SHA-256 of (schema, model digest, image hash, attack part, eps);
- ``logits:<variant>`` and ``map:<variant>:<method>:<target>:<layer>``;
- ``state``: what an attack caches for an image (FGSM's direction, PGD's image), shared by every model the
  perturbation is evaluated on: (attacking model's digest or none, image hash, attack part, eps or none);
- ``pair``: one comparison of two maps at one resolution; ``localisation``, ``faithfulness``, ``map_score``: one
  score of one map;
- ``rows``: one batch's finished per-image rows, from the per-(image, variant) inputs only (model, images, labels,
  masks) and the sweep's settings, so a warm batch is one read instead of one per cell.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from gcdash.store import cell_key

CLEAN = None  # the attack part of an unperturbed image
#: The version of how a batch's rows are made from its cells (the columns, the NaN rules, the dissimilarity of each
#: raw score): part of every :func:`rows` key, raised whenever that code changes, so kept rows never outlive it.
ROWS_VERSION = 3  # 2: an empty object mask scores NaN (hit and mass), not a miss; 3: settings list each scorer
#: The version of the localisation scores' rules, part of every :func:`localisation` key (2: an empty mask is NaN;
#: a cache made before keeps its 0.0 misses under the old keys, never served for the new rule; 3: "no score" is
#: stored as :data:`gcdash.engine.scoring.NO_SCORE`, no longer −1, so an old −1 is never read as a score).
LOCALISATION_VERSION = 3
#: The version of the deletion / insertion areas' keys (2: "no score" stored as ``NO_SCORE``, no longer −1).
FAITHFULNESS_VERSION = 2


def image_hash(x: torch.Tensor) -> str:
    """Content hash of one preprocessed image (float32 CHW at the model's input size)."""
    arr = x.detach().cpu().to(torch.float32).contiguous().numpy()
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()[:32]


def short(description: object) -> str:
    """A 16-hex-digit digest of a JSON-able description (a method with its parameters, a comparison)."""
    return cell_key(description)[:16]


def variants(model: str, hashes: Sequence[str], attack: Sequence[list | None] | None, eps: float) -> list[str]:
    """One variant key per image: ``attack`` gives each image's attack part (None, or eps = 0: the clean image)."""
    if eps == 0 or attack is None:
        return [cell_key("variant", model, h, CLEAN, 0.0) for h in hashes]
    return [cell_key("variant", model, h, part, float(eps)) for h, part in zip(hashes, attack)]


def logits(variant: str) -> str:
    return f"logits:{variant}"


def map_key(variant: str, method: str, target: int, layer: str) -> str:
    return f"map:{variant}:{method}:{int(target)}:{layer}"


def state(attacker: str | None, image: str, attack: list, eps: float | None) -> str:
    return cell_key("state", attacker, image, attack, eps)


def pair(clean_map: str, adv_map: str, size: Sequence[int], comparison: str) -> str:
    text = f"{clean_map}|{adv_map}|{size[0]}x{size[1]}|{comparison}"
    return hashlib.sha256(text.encode()).hexdigest()


def mask_hash(mask: torch.Tensor) -> str:
    """Content hash of one object mask at the model's input size (bool H×W)."""
    arr = mask.detach().cpu().to(torch.bool).contiguous().numpy()
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()[:32]


def localisation(map_key: str, mask: str, size: Sequence[int], score: str) -> str:
    """The key of one localisation score (``hit``, ``mass``) of a map against an object mask."""
    text = f"loc{LOCALISATION_VERSION}|{map_key}|{mask}|{size[0]}x{size[1]}|{score}"
    return hashlib.sha256(text.encode()).hexdigest()


def faithfulness(map_key: str, size: Sequence[int], settings: str, curve: str) -> str:
    """The key of one deletion / insertion area of a map on its own image (the variant inside ``map_key``)."""
    text = f"faith{FAITHFULNESS_VERSION}|{map_key}|{size[0]}x{size[1]}|{settings}|{curve}"
    return hashlib.sha256(text.encode()).hexdigest()


def map_score(scorer: str, map_key: str, size: Sequence[int], settings: str, score: str) -> str:
    """The key of one score of a map alone (a registered scorer's, :class:`gcdash.engine.scoring.MapScorer`):
    the scorer, the map, the size it is scored at and ``settings`` (a digest of what else the score depends on)."""
    return hashlib.sha256(f"{scorer}|{map_key}|{size[0]}x{size[1]}|{settings}|{score}".encode()).hexdigest()


def rows(model: str, settings: str, hashes: Sequence[str], labels: Sequence[int], masks: Sequence[str] | None) -> str:
    """The key of one batch's rows (image ids aside): the model's digest, each image's content hash, label and
    mask hash, and ``settings`` (a digest of :data:`ROWS_VERSION`, the method, target policy, attack, comparisons,
    faithfulness, eps, layers): every cell the rows are made of is a function of these."""
    return cell_key(
        "rows", model, settings, list(hashes), [int(y) for y in labels], None if masks is None else list(masks)
    )
