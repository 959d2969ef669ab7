"""Pictures and voice messages made by the tests themselves (no binary fixtures)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile
from PIL import Image

GPS_IFD = 0x8825
SECRET_MAKE = "AppareilSecret"


def photo_with_gps(size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG whose EXIF holds a GPS position (the Élysée) and a camera make."""
    image = Image.new("RGB", size, (30, 90, 160))
    exif = Image.Exif()
    exif[0x010F] = SECRET_MAKE
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (48.0, 52.0, 14.0)
    gps[3] = "E"
    gps[4] = (2.0, 18.0, 59.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def png(size: tuple[int, int] = (120, 80), color: tuple[int, int, int] = (250, 200, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims huge dimensions: a decompression bomb's shape."""
    source = bytearray(png((1, 1)))
    struct.pack_into(">II", source, 16, width, height)
    struct.pack_into(">I", source, 29, zlib.crc32(bytes(source[12:29])))
    return bytes(source)


def voice_ogg(seconds: float = 2.0, rate: int = 48_000) -> bytes:
    """An Ogg/Opus voice message, as Tchap's and Element's recorders send."""
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    out = io.BytesIO()
    soundfile.write(out, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="OGG", subtype="OPUS")
    return out.getvalue()


def voice_content(seconds: float) -> dict[str, object]:
    """The extra content keys of a voice message (MSC3245 marker, MSC1767 audio)."""
    return {
        "org.matrix.msc1767.audio": {"duration": int(seconds * 1000), "waveform": [0] * 10},
        "org.matrix.msc3245.voice": {},
    }
