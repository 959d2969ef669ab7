"""Voice messages and audio files for transcription: sniffed, measured and bounded.

What a client says about an audio file (`info.mimetype`, `info.duration`, `info.size`) is a
claim: it is used to refuse early (before a download) but never trusted to let something in.
The bytes decide: the container is recognised from its magic bytes, and the real duration is
read from it with mutagen (pure Python, no decoding of the audio itself). Only containers the
transcription service reads pass: Ogg (Opus or Vorbis, what Tchap and Element record), MP4/M4A
(AAC, iOS), WAV, MP3 and FLAC.

Pure and synchronous: callers run `inspect_audio` in a worker thread.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class AudioProblem(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TOO_LONG = "too_long"
    UNSUPPORTED = "unsupported"  # not a container we know (or not audio at all)
    CORRUPT = "corrupt"  # a known container that cannot be read


class AudioRejected(Exception):
    def __init__(self, problem: AudioProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 300.0


@dataclass(frozen=True)
class AudioClip:
    """Audio ready to send: the bytes, a file name whose extension names the container."""

    data: bytes
    file_name: str
    mimetype: str
    duration_seconds: float


@dataclass(frozen=True)
class _Container:
    extension: str
    mimetype: str
    readers: tuple[str, ...]  # mutagen's "module.Class", imported on first use (~2 MB)


_OGG = _Container("ogg", "audio/ogg", ("oggopus.OggOpus", "oggvorbis.OggVorbis"))
_WAV = _Container("wav", "audio/wav", ("wave.WAVE",))
_MP4 = _Container("m4a", "audio/mp4", ("mp4.MP4",))
_FLAC = _Container("flac", "audio/flac", ("flac.FLAC",))
_MP3 = _Container("mp3", "audio/mpeg", ("mp3.MP3",))


def _reader(name: str) -> Any:
    module, _, cls = name.partition(".")
    return getattr(importlib.import_module(f"mutagen.{module}"), cls)


def sniff_container(data: bytes) -> _Container | None:
    """The container named by the first bytes, whatever the declared mimetype says."""
    if data.startswith(b"OggS"):
        return _OGG
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _WAV
    if data[4:8] == b"ftyp":
        return _MP4
    if data.startswith(b"fLaC"):
        return _FLAC
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return _MP3
    return None


def check_declared(size: int | None, duration_ms: int | None, limits: AudioLimits) -> None:
    """Refuse before downloading when the event itself admits being over the limits."""
    if size is not None and size > limits.max_bytes:
        raise AudioRejected(AudioProblem.TOO_LARGE)
    if duration_ms is not None and duration_ms > limits.max_seconds * 1000:
        raise AudioRejected(AudioProblem.TOO_LONG)


def inspect_audio(data: bytes, limits: AudioLimits | None = None) -> AudioClip:
    """Check downloaded audio; raises AudioRejected with the reason, never anything else."""
    limits = limits or AudioLimits()
    if not data:
        raise AudioRejected(AudioProblem.EMPTY)
    if len(data) > limits.max_bytes:
        raise AudioRejected(AudioProblem.TOO_LARGE)
    container = sniff_container(data)
    if container is None:
        raise AudioRejected(AudioProblem.UNSUPPORTED)
    duration = _duration(data, container)
    if duration is None or duration <= 0:
        raise AudioRejected(AudioProblem.CORRUPT)
    if duration > limits.max_seconds:
        raise AudioRejected(AudioProblem.TOO_LONG)
    return AudioClip(
        data=data,
        file_name=f"voix.{container.extension}",
        mimetype=container.mimetype,
        duration_seconds=duration,
    )


def _duration(data: bytes, container: _Container) -> float | None:
    for name in container.readers:
        try:
            parsed = _reader(name)(io.BytesIO(data))
        except Exception:  # mutagen raises many kinds on malformed input: all mean "not this"
            continue
        length = getattr(getattr(parsed, "info", None), "length", None)
        if isinstance(length, (int, float)) and length == length:  # not NaN
            return float(length)
    return None
