"""Images uploaded through the browser: ``[(filename, bytes)]`` → (:class:`Samples`, problems).

Decoding is defensive because the bytes come from anyone: only the PNG, JPEG and WebP decoders are tried, the
pixel count is checked from the header before any pixel is decoded (PIL's decompression-bomb error is caught
too), the EXIF orientation is applied (phone photos), and every colour mode becomes 8-bit RGB (grayscale, palette,
CMYK; alpha composited onto white; integer pixels scaled by the depth their range shows, not clipped). A file
that fails is reported by name and skipped; the others still load; what was decided for a file (an integer image
read as 8-bit) is said beside the problems. Images much longer than wide (over :data:`MAX_ASPECT` to 1) are refused
before decoding: resized to a model's input on their short side, a 1×30000 strip would take gigabytes.
:func:`decode_image` is shared with the folder source.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gcdash.data import Samples
from gcdash.errors import GcdashError

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PIXELS = 40_000_000  # 40 megapixels (e.g. 7300×5500): more is rejected before decoding
MAX_ASPECT = 50  # long side / short side: at 224 on the short side, 50:1 resizes to 2.5 megapixels
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)
WHITE = (255, 255, 255, 255)
TOO_BIG = "too large or too elongated"
DENIED = "permission denied"
Note = tuple[str, str]  # what was decided for a file without asking: (kind, for counts; what, said for the file)
Converter = Callable[[Image.Image, list[Note]], np.ndarray]


class ImageError(GcdashError):
    """A file that cannot be used as an image; ``kind`` groups it when skips are counted (``{s}``: plural)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def decode_image(
    data: bytes | Path,
    name: str,
    formats: Sequence[str] = UPLOAD_FORMATS,
    max_pixels: int = MAX_PIXELS,
    notes: list[Note] | None = None,
    convert: Converter | None = None,
) -> np.ndarray:
    """Bytes (or a file) → uint8 RGB (H, W, 3), upright; any problem → :class:`GcdashError` naming ``name``.
    What was decided for the file is appended to ``notes``; ``convert`` replaces :func:`to_rgb` (masks)."""
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    kinds = ", ".join(formats[:-1]) + f" or {formats[-1]}" if len(formats) > 1 else formats[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit applies below
            with Image.open(source, formats=list(formats)) as image:
                check_pixels(image, name, max_pixels)
                return (convert or to_rgb)(ImageOps.exif_transpose(image), [] if notes is None else notes)
    except GcdashError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image too large (over {max_pixels:,} pixels); downscale it first", TOO_BIG) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable {kinds} image", "not a readable image") from None
    except PixelProblem as err:
        raise ImageError(f"{name}: {err}", "unusable pixels") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied (the file cannot be read by this user)", DENIED) from None
    except DECODE_ERRORS as err:
        raise ImageError(f"{name}: corrupt or truncated image ({err})", "corrupt or truncated") from None


def check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    """Reject an image whose header declares more than ``max_pixels`` pixels, or a side more than
    :data:`MAX_ASPECT` times the other (its resize to a model's input would be huge); nothing decoded yet."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}×{height} = {width * height:,} pixels, limit {max_pixels:,}); "
            "downscale it first",
            TOO_BIG,
        )
    if max(width, height) > MAX_ASPECT * max(min(width, height), 1):
        raise ImageError(
            f"{name}: image too elongated ({width}×{height}, more than {MAX_ASPECT}:1): resized to a model's input "
            "on its short side it would not fit in memory; crop it first",
            TOO_BIG,
        )


def to_rgb(image: Image.Image, notes: list[Note] | None = None) -> np.ndarray:
    """Any PIL mode → uint8 RGB (H, W, 3), by the converter registered for the mode (default ``convert``); what
    was decided on the way (an integer image's depth) is appended to ``notes``."""
    return np.ascontiguousarray(_CONVERTERS.get(image.mode, _convert)(image, [] if notes is None else notes))


def _convert(image: Image.Image, notes: list[Note]) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _flatten_alpha(image: Image.Image, notes: list[Note]) -> np.ndarray:
    """Composite onto white: transparent pixels show as background, not as whatever colour they store."""
    rgba = image.convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB"))


def _palette(image: Image.Image, notes: list[Note]) -> np.ndarray:
    return (_flatten_alpha if "transparency" in image.info else _convert)(image, notes)


class PixelProblem(ValueError):
    """The file decoded, but its pixels cannot be trusted as an image (NaN, an unknown range)."""


DECLARED_BITS = {"I": 32}  # PIL's integer modes: "I;16…" hold 16 bits, "I" 32 (TIFF int32, some 16-bit PNGs)


def _scale_integer(image: Image.Image, notes: list[Note]) -> np.ndarray:
    """Integer grayscale (PIL "I", "I;16", …): the depth is read from the data, not the mode, since files store
    8- or 16-bit data in wider integers: max ≤ 255 → 8-bit, ≤ 65535 → 16-bit, scaled to 0..255 (PIL's own
    ``convert`` clips above 255 to white); negative or wider values are refused. A depth other than the mode's
    is noted."""
    gray = np.asarray(image, dtype=np.float64)
    low, high = (float(gray.min()), float(gray.max())) if gray.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        raise PixelProblem(f"integer pixels span [{low:g}, {high:g}], neither 8- nor 16-bit: their scale is unknown")
    bits = 8 if high <= 255 else 16
    if bits != DECLARED_BITS.get(image.mode, 16):
        what = f"integer pixels span {low:g}..{high:g}: read as {bits}-bit"
        notes.append((f"integer image{{s}} read as {bits}-bit", what))
    gray = np.clip(np.round(gray * (255.0 / (2**bits - 1))), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _scale_float(image: Image.Image, notes: list[Note]) -> np.ndarray:
    """32-bit float grayscale (TIFF "F"): [0, 1] is scaled to 0..255, [0, 255] kept; NaN, infinity or another
    range are refused (PIL's own ``convert`` would clip [0, 1] to near-black and NaN to 0, silently)."""
    gray = np.asarray(image, dtype=np.float64)
    if not np.isfinite(gray).all():
        raise PixelProblem(f"float pixels include {int((~np.isfinite(gray)).sum())} NaN or infinite values")
    low, high = float(gray.min()), float(gray.max())
    if low < 0 or high > 255:
        raise PixelProblem(
            f"float pixels span [{low:g}, {high:g}], neither [0, 1] nor [0, 255]: their scale is unknown"
        )
    scale = 255.0 if high <= 1.0 else 1.0
    gray = np.clip(np.round(gray * scale), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


_CONVERTERS: dict[str, Converter] = {
    "F": _scale_float,
    "RGBA": _flatten_alpha,
    "LA": _flatten_alpha,
    "PA": _flatten_alpha,
    "RGBa": _flatten_alpha,
    "La": _flatten_alpha,
    "P": _palette,
    "I;16": _scale_integer,
    "I;16L": _scale_integer,
    "I;16B": _scale_integer,
    "I": _scale_integer,  # TIFF int32, and how PIL opens some 16-bit grayscale PNGs
}


def from_uploads(
    files: Sequence[tuple[str, bytes]],
    labels: Mapping[str, int | str] | None = None,
    class_names: Sequence[str] = (),
    max_pixels: int = MAX_PIXELS,
) -> tuple[Samples, list[str]]:
    """Decode uploaded files; return the good ones as :class:`Samples` and one message per skipped file.

    Ids are the file names (made unique: ``a.png``, ``a.png#2``). Labels are -1 (unknown) unless ``labels`` maps
    a file name to a class index or to a name in ``class_names``.
    """
    images, ids, label_values, problems = [], [], [], []
    for name, data in files:
        notes: list[Note] = []
        try:
            images.append(decode_image(bytes(data), name, UPLOAD_FORMATS, max_pixels, notes))
        except GcdashError as err:
            problems.append(str(err))
            continue
        problems.extend(f"{name}: {what}" for _, what in notes)
        ids.append(_unique(name, ids))
        label_values.append(_label(name, (labels or {}).get(name), class_names, problems))
    samples = Samples(images, np.asarray(label_values, np.int64), ids, list(class_names), meta={"source": "upload"})
    return samples, problems


def _unique(name: str, taken: list[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}#{k}"
    return candidate


def _label(name: str, value: int | str | None, class_names: Sequence[str], problems: list[str]) -> int:
    """A label index for ``name``: -1 when unknown; a bad value is reported and counts as unknown."""
    if value is None:
        return -1
    index = list(class_names).index(value) if value in class_names else value
    if isinstance(index, int) and (not class_names or 0 <= index < len(class_names)):
        return index
    problems.append(f"{name}: unknown label {value!r}; kept as unlabelled")
    return -1


__all__ = [
    "DENIED", "MAX_ASPECT", "MAX_PIXELS", "UPLOAD_FORMATS", "ImageError", "Note", "check_pixels", "decode_image",
    "from_uploads", "to_rgb",
]  # fmt: skip
