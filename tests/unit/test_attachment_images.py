"""Image preparation for the vision model: formats, downscaling, metadata stripping, bad input."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from bot.attachments.images import (
    ImageLimits,
    ImageProblem,
    ImageRejected,
    PreparedImage,
    prepare_image,
)

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def reopen(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.data))
    image.load()
    return image


def jpeg_with_gps_and_orientation() -> bytes:
    """A 300×200 JPEG whose EXIF holds a GPS position (Paris) and "rotate 90°" (orientation 6)."""
    image = Image.new("RGB", (300, 200), (200, 30, 30))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "FabricantSecret"  # Make
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 24.0)
    gps[3] = "E"
    gps[4] = (2.0, 21.0, 7.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(image, "JPEG", exif=exif.tobytes(), icc_profile=icc, comment=b"note interne")


def test_jpeg_metadata_never_leaves_and_orientation_is_applied() -> None:
    source = jpeg_with_gps_and_orientation()
    assert b"FabricantSecret" in source  # the test image really carries metadata
    assert GPS_IFD in Image.open(io.BytesIO(source)).getexif()

    prepared = prepare_image(source)

    assert prepared.mimetype == "image/jpeg"
    assert prepared.source_format == "JPEG"
    # Upright: the 300×200 picture tagged "rotate 90°" becomes 200×300 pixels.
    assert (prepared.width, prepared.height) == (200, 300)
    image = reopen(prepared)
    assert image.size == (200, 300)
    assert len(image.getexif()) == 0
    assert "exif" not in image.info
    assert "icc_profile" not in image.info
    assert "comment" not in image.info
    for marker in (b"Exif", b"FabricantSecret", b"note interne", b"ICC_PROFILE"):
        assert marker not in prepared.data


def test_large_photo_is_downscaled_keeping_its_ratio() -> None:
    source = encode(Image.new("RGB", (4000, 3000), (10, 120, 200)), "JPEG")
    prepared = prepare_image(source, ImageLimits(max_side_px=1540))
    assert max(prepared.width, prepared.height) == 1540
    assert prepared.width / prepared.height == pytest.approx(4 / 3, rel=0.01)
    assert reopen(prepared).size == (prepared.width, prepared.height)


def test_small_image_keeps_its_size() -> None:
    prepared = prepare_image(encode(Image.new("RGB", (64, 48), (1, 2, 3)), "PNG"))
    assert (prepared.width, prepared.height) == (64, 48)


def test_transparent_png_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 20, 40))
    prepared = prepare_image(encode(image, "PNG", pnginfo=_png_text("Auteur", "Secret")))
    out = reopen(prepared).convert("RGB")
    assert out.getpixel((35, 20)) == pytest.approx((255, 255, 255), abs=3)
    red, green, blue = out.getpixel((5, 20))  # type: ignore[misc]
    assert blue > 200 and red < 40 and green < 40
    assert b"Secret" not in prepared.data


def test_webp_is_read() -> None:
    prepared = prepare_image(encode(Image.new("RGB", (80, 60), (0, 200, 0)), "WEBP"))
    assert prepared.source_format == "WEBP"
    assert (prepared.width, prepared.height) == (80, 60)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("P", (30, 30), index) for index in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    source = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    prepared = prepare_image(source)
    assert prepared.source_format == "GIF"
    red, green, _ = reopen(prepared).convert("RGB").getpixel((15, 15))  # type: ignore[misc]
    assert red > 200 and green < 50  # frame 1 is red, frame 2 green


def test_data_url_carries_the_jpeg() -> None:
    prepared = prepare_image(encode(Image.new("RGB", (8, 8)), "PNG"))
    prefix = "data:image/jpeg;base64,"
    assert prepared.data_url.startswith(prefix)
    assert base64.b64decode(prepared.data_url[len(prefix) :]) == prepared.data


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    image = Image.effect_noise((300, 300), 64).convert("RGB" if fmt != "GIF" else "L")
    source = encode(image, fmt)
    with pytest.raises(ImageRejected) as caught:
        prepare_image(source[: len(source) // 2])
    assert caught.value.problem is ImageProblem.CORRUPT


def _png_text(key: str, value: str) -> object:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG rewritten to claim huge dimensions (a decompression bomb's header)."""
    source = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    # Signature (8) + IHDR length (4) + b"IHDR" (4), then width, height, ... and the CRC.
    struct.pack_into(">II", source, 16, width, height)
    crc = zlib.crc32(bytes(source[12:29]))
    struct.pack_into(">I", source, 29, crc)
    return bytes(source)


@pytest.mark.parametrize(
    ("width", "height"),
    [(10_000, 10_000), (100_000, 100_000)],  # over our limit; over twice Pillow's own
)
def test_decompression_bombs_are_refused_before_decoding(width: int, height: int) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare_image(png_claiming(width, height), ImageLimits(max_pixels=50_000_000))
    assert caught.value.problem is ImageProblem.TOO_MANY_PIXELS


def test_pixel_limit_is_a_setting() -> None:
    source = encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(ImageRejected) as caught:
        prepare_image(source, ImageLimits(max_pixels=200 * 199))
    assert caught.value.problem is ImageProblem.TOO_MANY_PIXELS


@pytest.mark.parametrize(
    "source",
    [
        b"ceci n'est pas une image",
        b"\x00" * 64,
        encode(Image.new("RGB", (10, 10)), "BMP"),
        encode(Image.new("RGB", (10, 10)), "TIFF"),
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    ],
    ids=["text", "zeros", "bmp", "tiff", "pdf"],
)
def test_other_formats_are_unsupported(source: bytes) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare_image(source)
    assert caught.value.problem is ImageProblem.UNSUPPORTED


def test_empty_and_oversized_files() -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare_image(b"")
    assert caught.value.problem is ImageProblem.EMPTY
    source = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageRejected) as caught:
        prepare_image(source, ImageLimits(max_bytes=len(source) - 1))
    assert caught.value.problem is ImageProblem.TOO_LARGE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 "]
    ),
    tail=st.binary(max_size=2048),
)
def test_any_bytes_give_an_image_or_a_reason(prefix: bytes, tail: bytes) -> None:
    try:
        prepared = prepare_image(prefix + tail)
    except ImageRejected as rejected:
        assert rejected.problem in ImageProblem
    else:
        assert prepared.data.startswith(b"\xff\xd8")
