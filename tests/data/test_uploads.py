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


@pytest.mark.parametrize(
    ("pixels", "fmt", "expected", "note"),
    [
        (np.array([[0, 100], [200, 255]], np.int32), "TIFF", [0, 100, 200, 255], "0..255: read as 8-bit"),  # mode "I"
        (np.array([[0, 100], [200, 255]], np.uint16), "PNG", [0, 100, 200, 255], "0..255: read as 8-bit"),  # "I;16"
        (np.array([[0, 1000], [30000, 65535]], np.int32), "TIFF", [0, 4, 117, 255], "0..65535: read as 16-bit"),
        (np.array([[0, 1000], [30000, 65535]], np.uint16), "PNG", [0, 4, 117, 255], None),  # 16-bit as declared
    ],
)
def test_integer_images_are_scaled_by_their_range_and_said(pixels, fmt, expected, note):
    notes = []
    image = decode_image(encode(Image.fromarray(pixels), fmt), f"x.{fmt.lower()}", ("PNG", "TIFF"), notes=notes)
    assert image[:, :, 0].flatten().tolist() == expected
    assert [what for _, what in notes] == ([f"integer pixels span {note}"] if note else [])


def test_integer_images_out_of_range_are_refused():
    for pixels, span in (([[0, 70000]], r"\[0, 70000\]"), ([[-5, 9]], r"\[-5, 9\]")):
        pixels = np.array(pixels, np.int32)
        with pytest.raises(GcdashError, match=f"x.tif: integer pixels span {span}.*scale is unknown"):
            decode_image(encode(Image.fromarray(pixels), "TIFF"), "x.tif", ("TIFF",))


def test_an_upload_read_with_a_choice_says_it():
    samples, problems = from_uploads([("dim.png", encode(Image.fromarray(np.full((4, 4), 80, np.uint16))))])
    assert len(samples) == 1 and samples.images[0].max() == 80
    assert problems == ["dim.png: integer pixels span 80..80: read as 8-bit"]


def test_a_strip_is_refused_before_decoding():
    """1×30000 is under the pixel cap, but resized to 224 on its short side it is 224×6,720,000."""
    with pytest.raises(GcdashError, match=r"strip.png: image too elongated \(1×30000, more than 50:1\)"):
        decode_image(png_header(1, 30_000), "strip.png")
    assert decode_image(encode(Image.new("RGB", (500, 10))), "wide.png").shape == (10, 500, 3)  # 50:1 still loads
