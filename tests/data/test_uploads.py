"""Browser uploads: every colour mode becomes uint8 RGB, EXIF orientation is applied, oversized and corrupt files
are reported by name and skipped while the rest load, and labels come from an optional mapping."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gcdash.data.uploads import decode_image, from_uploads
from gcdash.errors import GcdashError


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` but holds almost nothing (what a decompression bomb looks like
    before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def palette_image(transparent: bool) -> Image.Image:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    if transparent:
        image.info["transparency"] = 1
    return image


def sixteen_bit() -> Image.Image:
    return Image.fromarray(np.array([[0, 32768], [65535, 1000]], dtype=np.uint16))


# name, file bytes, expected pixel (0, 0)
CONVERSIONS = {
    "rgb.png": (encode(Image.new("RGB", (4, 4), (10, 20, 30))), (10, 20, 30)),
    "rgb.jpg": (encode(Image.new("RGB", (8, 8), (200, 100, 50)), "JPEG", quality=100), (200, 100, 50)),
    "rgb.webp": (encode(Image.new("RGB", (4, 4), (10, 200, 30)), "WEBP", lossless=True), (10, 200, 30)),
    "gray.png": (encode(Image.new("L", (4, 4), 77)), (77, 77, 77)),
    "gray-alpha.png": (encode(Image.new("LA", (4, 4), (77, 0))), (255, 255, 255)),
    "clear.png": (encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0))), (255, 255, 255)),
    "opaque.png": (encode(Image.new("RGBA", (4, 4), (1, 2, 3, 255))), (1, 2, 3)),
    "half.webp": (encode(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), "WEBP", lossless=True), (127, 127, 127)),
    "palette.png": (encode(palette_image(False)), (200, 10, 10)),
    "palette-clear.png": (encode(palette_image(True)), (255, 255, 255)),
    "cmyk.jpg": (encode(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", quality=100), (255, 255, 255)),
    "sixteen.png": (encode(sixteen_bit()), (0, 0, 0)),
}


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_conversions_to_rgb(name):
    data, pixel = CONVERSIONS[name]
    image = decode_image(data, name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert np.abs(image[0, 0].astype(int) - pixel).max() <= 2, image[0, 0]


def test_sixteen_bit_is_scaled_not_clipped():
    image = decode_image(encode(sixteen_bit()), "sixteen.png")
    assert image[:, :, 0].tolist() == [[0, 128], [255, 4]]


def test_exif_orientation_is_applied():
    """Stored 20 wide × 10 high, left half red; orientation 6 means "rotate 90° clockwise to view"."""
    stored = np.zeros((10, 20, 3), np.uint8)
    stored[:, :10] = (255, 0, 0)
    stored[:, 10:] = (0, 0, 255)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    upright = decode_image(encode(image, "JPEG", quality=100, exif=exif.tobytes()), "phone.jpg")
    assert upright.shape == (20, 10, 3)
    assert upright[2, 5, 0] > 200 and upright[2, 5, 2] < 60  # top half red
    assert upright[17, 5, 2] > 200 and upright[17, 5, 0] < 60  # bottom half blue


def test_oversized_images_are_rejected_without_decoding():
    for name, data in {"bomb.png": png_header(30_000, 30_000), "huge.png": png_header(9_000, 9_000)}.items():
        with pytest.raises(GcdashError, match=f"{name}: image too large"):
            decode_image(data, name)
    small = encode(Image.new("RGB", (20, 20)))
    with pytest.raises(GcdashError, match="20×20 = 400 pixels, limit 100"):
        decode_image(small, "small.png", max_pixels=100)


def test_corrupt_files_are_reported_and_skipped():
    good = encode(Image.new("RGB", (6, 6), (1, 2, 3)))
    files = [
        ("a.png", good),
        ("junk.jpg", b"this is not an image"),
        ("truncated.jpg", encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG")[:300]),
        ("bomb.png", png_header(30_000, 30_000)),
        ("anim.gif", encode(Image.new("RGB", (4, 4)), "GIF")),
        ("b.jpg", encode(Image.new("RGB", (6, 6), (1, 2, 3)), "JPEG")),
    ]
    samples, problems = from_uploads(files)
    assert samples.ids == ["a.png", "b.jpg"]
    assert samples.labels.tolist() == [-1, -1]
    assert [p.split(":")[0] for p in problems] == ["junk.jpg", "truncated.jpg", "bomb.png", "anim.gif"]
    assert "not a readable PNG, JPEG or WEBP image" in problems[0]
    assert "corrupt or truncated" in problems[1]


def test_labels_and_duplicate_names():
    png = encode(Image.new("RGB", (4, 4)))
    files = [("x.png", png), ("x.png", png), ("y.png", png), ("z.png", png)]
    labels = {"x.png": "cat", "y.png": 0, "z.png": "bird"}
    samples, problems = from_uploads(files, labels=labels, class_names=["dog", "cat"])
    assert samples.ids == ["x.png", "x.png#2", "y.png", "z.png"]
    assert samples.labels.tolist() == [1, 1, 0, -1]
    assert samples.class_names == ["dog", "cat"]
    assert problems == ["z.png: unknown label 'bird'; kept as unlabelled"]


def test_nothing_uploaded():
    samples, problems = from_uploads([])
    assert len(samples) == 0 and problems == []
