r"""ImageNet-1k's classes, shipped: WordNet ids (``n01440764``, the class folders of ImageNet's validation layout) in
the standard 0–999 order, and the rule that says whether a model's 1000 classes are ImageNet's.

``imagenet1k.tsv`` (``index``, ``wnid``, ``name``: WordNet's synonyms, the first one the class's short name) was
written once from timm's bundled copy, in the order every torchvision and timm ImageNet head uses::

    python - > gcdash/data/imagenet1k.tsv <<'EOF'
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    print("index\twnid\tname")
    for k, (wnid, name) in enumerate(zip(info.label_names(), info.label_descriptions())):
        print(f"{k}\t{wnid}\t{name}")
    EOF

A model's classes are ImageNet's (:func:`is_imagenet`) when it has exactly 1000 and at least :data:`SAME_AT_LEAST`
of them, position by position and ignoring case, are that class's short name (timm's naming), its full synonym
list or its wnid: torchvision's ``categories`` differ from timm's short names at two positions (``crane bird``,
``maillot tank suit``), so either naming passes while a list in another order or of other classes does not.
Unnamed classes (``class 0`` … ``class 999``) do not count; an ImageNet architecture with random weights or a
checkpoint that carries no names gets the library's ImageNet names (:mod:`gcdash.models.paper`), so it counts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

TABLE = Path(__file__).with_name("imagenet1k.tsv")
WNID = re.compile(r"n\d{8}")
CLASSES = 1000
SAME_AT_LEAST = 990  # positions whose name must match for a model's 1000 classes to count as ImageNet's


@functools.cache
def table() -> tuple[tuple[str, str], ...]:
    """(wnid, synonyms) per class, in the standard order, read once from the shipped table."""
    lines = TABLE.read_text(encoding="utf-8").splitlines()[1:]
    return tuple((wnid, name) for _, wnid, name in (line.split("\t") for line in lines))


def is_wnid(name: str) -> bool:
    """Whether ``name`` is written as a WordNet id (``n`` and 8 digits), known to ImageNet-1k or not."""
    return WNID.fullmatch(name) is not None


def _names_at(index: int) -> set[str]:
    wnid, synonyms = table()[index]
    return {wnid, synonyms.lower(), synonyms.split(",")[0].strip().lower()}


def is_imagenet(class_names: Sequence[str]) -> bool:
    """Whether ``class_names`` are ImageNet-1k's in the standard order (the rule in the module docstring)."""
    if len(class_names) != CLASSES:
        return False
    same = sum(str(name).strip().lower() in _names_at(i) for i, name in enumerate(class_names))
    return same >= SAME_AT_LEAST


def wnid_index(class_names: Sequence[str]) -> dict[str, int]:
    """wnid → class index when ``class_names`` are ImageNet's (:func:`is_imagenet`), else empty."""
    return {wnid: i for i, (wnid, _) in enumerate(table())} if is_imagenet(class_names) else {}


__all__ = ["SAME_AT_LEAST", "TABLE", "is_imagenet", "is_wnid", "table", "wnid_index"]
