"""Images for a vision model: decoded, bounded, downscaled, re-encoded, metadata stripped.

A picture from a room is untrusted bytes. Before anything reaches the model it is decoded by
Pillow with only the four formats the models read (PNG, JPEG, WebP, GIF: first frame), its
dimensions are checked *before* the pixels are decoded (decompression bombs), EXIF orientation
is applied, then it is downscaled to the model's useful size and re-encoded from pixels alone:
EXIF (GPS positions included), XMP, ICC profiles and comments never leave the bot.

Pure and synchronous (CPU-bound): callers run `prepare_image` in a worker thread.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow (~2 MB) loads with the first picture
    from PIL import Image

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
JPEG_QUALITY = 85
# A flattened image's background (transparency has no meaning for the model).
BACKGROUND = (255, 255, 255)


class ImageProblem(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"  # bytes
    TOO_MANY_PIXELS = "too_many_pixels"  # dimensions (decompression bomb)
    UNSUPPORTED = "unsupported"  # not one of the four formats, or not an image at all
    CORRUPT = "corrupt"  # truncated or undecodable


class ImageRejected(Exception):
    def __init__(self, problem: ImageProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side_px: int = 1540


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    mimetype: str
    width: int
    height: int
    source_format: str

    @property
    def data_url(self) -> str:
        return f"data:{self.mimetype};base64,{base64.b64encode(self.data).decode('ascii')}"


def prepare_image(data: bytes, limits: ImageLimits | None = None) -> PreparedImage:
    """Return the picture as a clean JPEG no larger than `limits.max_side_px` on either side.

    Raises ImageRejected with the reason; never anything else for bad input.
    """
    from PIL import Image, UnidentifiedImageError

    limits = limits or ImageLimits()
    if not data:
        raise ImageRejected(ImageProblem.EMPTY)
    if len(data) > limits.max_bytes:
        raise ImageRejected(ImageProblem.TOO_LARGE)
    try:
        return _prepare(data, limits)
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise ImageRejected(ImageProblem.TOO_MANY_PIXELS) from None
    except UnidentifiedImageError:
        raise ImageRejected(ImageProblem.UNSUPPORTED) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError):
        # Pillow's decoders report truncated or malformed data with these.
        raise ImageRejected(ImageProblem.CORRUPT) from None


def _prepare(data: bytes, limits: ImageLimits) -> PreparedImage:
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        # Pillow warns past MAX_IMAGE_PIXELS and raises only past twice that: our own bound
        # below is the rule, and the warning must not leak into logs as noise.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except Image.DecompressionBombWarning:
            raise ImageRejected(ImageProblem.TOO_MANY_PIXELS) from None
        with image:
            source_format = str(image.format)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageRejected(ImageProblem.CORRUPT)
            if width * height > limits.max_pixels:
                raise ImageRejected(ImageProblem.TOO_MANY_PIXELS)
            if source_format == "JPEG":
                # Let libjpeg decode at a reduced scale: a 24 Mpx photo costs a fraction.
                image.draft("RGB", (limits.max_side_px, limits.max_side_px))
            image.seek(0)  # GIF (and animated WebP): the first frame only
            image.load()
            upright = ImageOps.exif_transpose(image) or image
            flat = _flatten(upright)
            flat.info.clear()  # a new object: drop what Pillow copied over (exif, icc, xmp…)
            flat.thumbnail((limits.max_side_px, limits.max_side_px), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            # Saved from pixels only: no exif=, icc_profile=, comment= → no metadata at all.
            flat.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
            return PreparedImage(
                data=out.getvalue(),
                mimetype="image/jpeg",
                width=flat.width,
                height=flat.height,
                source_format=source_format,
            )


def _flatten(image: Image.Image) -> Image.Image:
    """An RGB image: transparency composed on white, palettes and grey levels expanded."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode != "RGB":
        return image.convert("RGB")
    return image.copy()  # a new object even when already RGB: its info dict is ours to clear
