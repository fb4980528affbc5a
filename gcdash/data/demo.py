"""The ``demo`` image source: procedurally drawn shapes on textured, cluttered backgrounds.

Each image shows one object of a class in :data:`CLASS_NAMES` at a random position, scale, rotation and colour,
on a smooth colour field with stripes and pixel noise, plus small clutter (short lines, dots) that is never the
class shape, so a model has to find the object. The object is drawn last and its exact pixel mask is returned.

Image ``i`` of a split is drawn from its own generator, seeded by ``SeedSequence((SALT, split, seed, i))``; so any
subset is cheap and stable, and the splits (distinct seed streams) never share an image. The class of image ``i``
is ``i mod len(CLASS_NAMES)`` (balanced, and unchanged by a class filter). Ids read ``demo-<split>-<i:06d>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import count, islice

import numpy as np
from PIL import Image, ImageDraw

from gcdash.data import Samples, check_count, register_source
from gcdash.errors import GcdashError

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
IMAGE_SIZE = 64
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = 60
SALT = 0x6763_6461  # "gcda": keeps these streams apart from any other use of the same small seeds

RADIUS = (0.16, 0.32)  # object's circumradius as a fraction of the image side
MIN_CONTRAST = 110.0  # least RGB distance between the object's colour and the background under it
NOISE_STD = 6.0  # pixel noise (grey levels) added over the whole image, object included


@dataclass(frozen=True)
class Scene:
    """What was drawn in one image: its class, the object's centre and radius in pixels, angle, colour."""

    label: int
    center: tuple[float, float]
    radius: float
    angle: float
    color: tuple[int, int, int]


def _regular(n: int, inner: float | None = None) -> np.ndarray:
    """Vertices of a regular n-gon (or an n-pointed star with the given inner radius) on the unit circle."""
    if inner is None:
        t = np.arange(n) * 2 * np.pi / n - np.pi / 2
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    t = np.arange(2 * n) * np.pi / n - np.pi / 2
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(arm: float = 0.36) -> np.ndarray:
    """A plus sign of half-arm-width ``arm`` inscribed in the unit circle."""
    a, b = arm, float(np.sqrt(1 - arm**2))
    return np.array([(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b), (-a, -b), (-a, -a), (-b, -a), (-b, a),
                     (-a, a), (-a, b)])  # fmt: skip


# Each class: outline polygon (unit circumradius) and an optional hole (same units), drawn filled.
_OUTLINES: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
    "circle": (_regular(48), None),
    "square": (_regular(4), None),
    "triangle": (_regular(3), None),
    "star": (_regular(5, inner=0.45), None),
    "cross": (_cross(), None),
    "ring": (_regular(48), _regular(48) * 0.55),
}


def image_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``split`` under ``seed``."""
    return np.random.default_rng(np.random.SeedSequence((SALT, SPLITS[split], seed, index)))


@lru_cache(maxsize=4)
def _grid(size: int) -> np.ndarray:
    """Row and column coordinates, float32 (2, H, W)."""
    return np.mgrid[0:size, 0:size].astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour field (4×4 random colours, bicubic) plus oriented stripes of random frequency; float (H, W, 3)."""
    coarse = rng.integers(20, 236, size=(4, 4, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    yy, xx = _grid(size)
    theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6), rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0, 28, size=3).astype(np.float32)
    stripes = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    return field + stripes[..., None] * amp


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """Short line segments and small dots in random colours: texture a model must learn to ignore."""
    for _ in range(int(rng.integers(4, 11))):
        x0, y0 = rng.uniform(0, size, 2)
        length, angle = rng.uniform(0.06, 0.25) * size, rng.uniform(0, 2 * np.pi)
        end = (x0 + length * np.cos(angle), y0 + length * np.sin(angle))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line([(x0, y0), end], fill=fill, width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.uniform(0, size, 2)
        r = rng.uniform(0.8, 0.04 * size)
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=fill)


def _scene(rng: np.random.Generator, label: int, size: int) -> Scene:
    """Draw the object's placement: it always lies fully inside the image."""
    radius = rng.uniform(*RADIUS) * size
    center = tuple(float(c) for c in rng.uniform(radius, size - radius, 2))
    angle = float(rng.uniform(0, 2 * np.pi))
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    return Scene(label, center, float(radius), angle, color)  # type: ignore[arg-type]


def _object_mask(scene: Scene, size: int) -> np.ndarray:
    """The object's filled outline (minus its hole) rasterised at ``size``: bool (H, W)."""
    outline, hole = _OUTLINES[CLASS_NAMES[scene.label]]
    c, s = np.cos(scene.angle), np.sin(scene.angle)
    rot = np.array([[c, -s], [s, c]]) * scene.radius
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    draw.polygon([tuple(p) for p in outline @ rot.T + scene.center], fill=255)
    if hole is not None:
        draw.polygon([tuple(p) for p in hole @ rot.T + scene.center], fill=0)
    return np.asarray(layer) > 0


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A colour at least :data:`MIN_CONTRAST` from the mean background colour ``under`` (rejection sampling)."""
    for _ in range(64):
        color = rng.integers(0, 256, 3)
        if np.linalg.norm(color - under) >= MIN_CONTRAST:
            break
    else:
        color = np.where(under < 128, 255, 0)
    return tuple(int(c) for c in color)  # type: ignore[return-value]


def render(split: str, index: int, seed: int = 0, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray, Scene]:
    """Draw image ``index`` of ``split``: uint8 RGB (H, W, 3), its bool object mask (H, W) and its :class:`Scene`."""
    rng = image_rng(split, seed, index)
    scene = _scene(rng, index % len(CLASS_NAMES), size)
    canvas = Image.fromarray(np.clip(_background(rng, size), 0, 255).astype(np.uint8))
    _draw_clutter(ImageDraw.Draw(canvas), rng, size)
    mask = _object_mask(scene, size)
    pixels = np.asarray(canvas, dtype=np.float32)
    color = _contrasting_color(rng, pixels[mask].mean(axis=0) if mask.any() else pixels.mean(axis=(0, 1)))
    scene = replace(scene, color=color)
    pixels[mask] = color
    pixels += NOISE_STD * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(pixels, 0, 255).round().astype(np.uint8), mask, scene


def class_indices(classes: Sequence[str] | None, n: int, start: int = 0) -> list[int]:
    """The first ``n`` image indices from ``start`` whose class is in ``classes`` (all classes when ``None``)."""
    wanted = set(range(len(CLASS_NAMES))) if classes is None else {_class_id(c) for c in classes}
    if not wanted:
        raise GcdashError(f"no demo class chosen; choose from: {', '.join(CLASS_NAMES)}")
    return list(islice((i for i in count(start) if i % len(CLASS_NAMES) in wanted), n))


def _class_id(name: str) -> int:
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise GcdashError(f"unknown demo class {name!r}; choose from: {', '.join(CLASS_NAMES)}") from None


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise GcdashError(f"unknown demo split {split!r}; choose from: {', '.join(SPLITS)}")
    return split


def generate_arrays(split: str, indices: Iterable[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images uint8 (N, H, W, 3), masks bool (N, H, W) and labels int64 (N,) for the given indices (for training)."""
    index = [int(i) for i in indices]
    drawn = [render(_check_split(split), i, seed)[:2] for i in index]
    labels = np.array([i % len(CLASS_NAMES) for i in index], dtype=np.int64)
    if not drawn:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8), np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), bool), labels
    return np.stack([d[0] for d in drawn]), np.stack([d[1] for d in drawn]), labels


def generate(split: str, indices: Iterable[int], seed: int = 0) -> Samples:
    """The demo images with the given indices as :class:`Samples` (with object masks)."""
    index = [int(i) for i in indices]
    drawn = [render(_check_split(split), i, seed) for i in index]
    return Samples(
        images=[d[0] for d in drawn],
        labels=[d[2].label for d in drawn],
        ids=[f"demo-{split}-{i:06d}" for i in index],
        class_names=list(CLASS_NAMES),
        masks=[d[1] for d in drawn],
        meta={"source": "demo", "split": split, "seed": seed},
    )


def _count(n: int | None, per_class: int | None, n_classes: int) -> int:
    """How many images a request asks for: ``n`` caps the total, ``per_class`` each class (classes cycle, so the
    first ``per_class × n_classes`` indices hold exactly ``per_class`` of each); neither → :data:`DEFAULT_N`."""
    for name, value in (("n", n), ("per_class", per_class)):
        if value is not None and value < 0:
            raise GcdashError(f"{name} must be ≥ 0, got {value}")
    total = (DEFAULT_N if n is None else n) if per_class is None else per_class * n_classes
    total = total if n is None else min(n, total)
    check_count(total)
    return total


def load_demo(
    arg: str | None = None,
    n: int | None = None,
    seed: int = 0,
    split: str | None = None,
    classes: Sequence[str] | str | None = None,
    per_class: int | None = None,
) -> Samples:
    """Loader for specs ``demo`` and ``demo:<split>``: the first images of the split (default ``test``) under
    ``seed``, optionally only of ``classes`` (names, or one comma-separated string); see :func:`_count` for ``n``
    and ``per_class``."""
    if arg and split and arg != split:
        raise GcdashError(f"demo split given twice ({arg!r} and {split!r}); give it once")
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    chosen = _check_split(arg or split or "test")
    n_classes = len(CLASS_NAMES) if classes is None else len({_class_id(c) for c in classes})
    return generate(chosen, class_indices(classes, _count(n, per_class, n_classes)), seed)


register_source("demo", load_demo)

__all__ = ["CLASS_NAMES", "IMAGE_SIZE", "SPLITS", "Scene", "class_indices", "generate", "generate_arrays", "render"]
