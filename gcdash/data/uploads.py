"""Images uploaded through the browser: ``[(filename, bytes)]`` → (:class:`Samples`, problems).

Decoding is defensive because the bytes come from anyone: only the PNG, JPEG and WebP decoders are tried, the
pixel count is checked from the header before any pixel is decoded (PIL's decompression-bomb error is caught
too), the EXIF orientation is applied (phone photos), and every colour mode becomes 8-bit RGB (grayscale, palette,
CMYK; alpha composited onto white; 16-bit scaled, not clipped). A file that fails is reported by name and
skipped; the others still load. :func:`decode_image` is shared with the folder source.
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
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)
WHITE = (255, 255, 255, 255)


def decode_image(
    data: bytes | Path, name: str, formats: Sequence[str] = UPLOAD_FORMATS, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Bytes (or a file) → uint8 RGB (H, W, 3), upright; any problem → :class:`GcdashError` naming ``name``."""
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    kinds = ", ".join(formats[:-1]) + f" or {formats[-1]}" if len(formats) > 1 else formats[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit applies below
            with Image.open(source, formats=list(formats)) as image:
                check_pixels(image, name, max_pixels)
                return to_rgb(ImageOps.exif_transpose(image))
    except GcdashError:
        raise
    except Image.DecompressionBombError:
        raise GcdashError(f"{name}: image too large (over {max_pixels:,} pixels); downscale it first") from None
    except UnidentifiedImageError:
        raise GcdashError(f"{name}: not a readable {kinds} image") from None
    except PixelProblem as err:
        raise GcdashError(f"{name}: {err}") from None
    except PermissionError:
        raise GcdashError(f"{name}: permission denied (the file cannot be read by this user)") from None
    except DECODE_ERRORS as err:
        raise GcdashError(f"{name}: corrupt or truncated image ({err})") from None


def check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    """Reject an image whose header declares more than ``max_pixels`` pixels (nothing decoded yet)."""
    width, height = image.size
    if width * height > max_pixels:
        raise GcdashError(
            f"{name}: image too large ({width}×{height} = {width * height:,} pixels, limit {max_pixels:,}); "
            "downscale it first"
        )


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode → uint8 RGB (H, W, 3), by the converter registered for the mode (default ``convert``)."""
    return np.ascontiguousarray(_CONVERTERS.get(image.mode, _convert)(image))


def _convert(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _flatten_alpha(image: Image.Image) -> np.ndarray:
    """Composite onto white: transparent pixels show as background, not as whatever colour they store."""
    rgba = image.convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB"))


def _palette(image: Image.Image) -> np.ndarray:
    return _flatten_alpha(image) if "transparency" in image.info else _convert(image)


def _scale_16bit(image: Image.Image) -> np.ndarray:
    """16-bit grayscale: scale 0..65535 to 0..255 (PIL's own ``convert`` clips everything above 255 to white)."""
    gray = np.asarray(image, dtype=np.float64)
    gray = np.clip(np.round(gray * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


class PixelProblem(ValueError):
    """The file decoded, but its pixels cannot be trusted as an image (NaN, an unknown range)."""


def _scale_float(image: Image.Image) -> np.ndarray:
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


_CONVERTERS: dict[str, Callable[[Image.Image], np.ndarray]] = {
    "F": _scale_float,
    "RGBA": _flatten_alpha,
    "LA": _flatten_alpha,
    "PA": _flatten_alpha,
    "RGBa": _flatten_alpha,
    "La": _flatten_alpha,
    "P": _palette,
    "I;16": _scale_16bit,
    "I;16L": _scale_16bit,
    "I;16B": _scale_16bit,
    "I": _scale_16bit,  # how PIL opens some 16-bit grayscale PNGs
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
        try:
            images.append(decode_image(bytes(data), name, UPLOAD_FORMATS, max_pixels))
        except GcdashError as err:
            problems.append(str(err))
            continue
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


__all__ = ["MAX_PIXELS", "UPLOAD_FORMATS", "check_pixels", "decode_image", "from_uploads", "to_rgb"]
