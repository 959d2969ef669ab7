"""Audio checks before transcription: containers sniffed from the bytes, real durations, limits."""

from __future__ import annotations

import io
import math
import struct
import wave

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.attachments.voice import (
    AudioLimits,
    AudioProblem,
    AudioRejected,
    check_declared,
    inspect_audio,
)


def wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    """A mono 16-bit WAV with a 440 Hz tone, made with the standard library."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples)
    return out.getvalue()


def encoded(seconds: float, fmt: str, subtype: str | None = None, rate: int = 48_000) -> bytes:
    """Audio written by libsndfile (soundfile's wheel): Ogg/Opus as Tchap records it, etc."""
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    out = io.BytesIO()
    soundfile.write(out, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format=fmt, subtype=subtype)
    return out.getvalue()


def test_wav_duration_is_read_from_the_file() -> None:
    clip = inspect_audio(wav_bytes(1.5))
    assert clip.duration_seconds == pytest.approx(1.5, abs=0.01)
    assert clip.file_name == "voix.wav"
    assert clip.mimetype == "audio/wav"


@pytest.mark.parametrize(
    ("fmt", "subtype", "name"),
    [
        ("OGG", "OPUS", "voix.ogg"),
        ("OGG", "VORBIS", "voix.ogg"),
        ("FLAC", None, "voix.flac"),
        ("MP3", None, "voix.mp3"),
    ],
)
def test_encoded_voice_formats(fmt: str, subtype: str | None, name: str) -> None:
    clip = inspect_audio(encoded(2.0, fmt, subtype))
    assert clip.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert clip.file_name == name


def test_real_duration_wins_over_the_limit() -> None:
    with pytest.raises(AudioRejected) as caught:
        inspect_audio(encoded(3.0, "OGG", "OPUS"), AudioLimits(max_seconds=2.0))
    assert caught.value.problem is AudioProblem.TOO_LONG


def test_size_limit() -> None:
    data = wav_bytes(0.5)
    with pytest.raises(AudioRejected) as caught:
        inspect_audio(data, AudioLimits(max_bytes=len(data) - 1))
    assert caught.value.problem is AudioProblem.TOO_LARGE


def test_declared_size_and_duration_refuse_before_download() -> None:
    limits = AudioLimits(max_bytes=1000, max_seconds=60)
    check_declared(1000, 60_000, limits)
    check_declared(None, None, limits)
    with pytest.raises(AudioRejected) as caught:
        check_declared(1001, None, limits)
    assert caught.value.problem is AudioProblem.TOO_LARGE
    with pytest.raises(AudioRejected) as caught:
        check_declared(None, 60_001, limits)
    assert caught.value.problem is AudioProblem.TOO_LONG


@pytest.mark.parametrize(
    "data",
    [
        b"ceci n'est pas du son",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"\x1a\x45\xdf\xa3" + b"\x00" * 40,  # WebM/Matroska: not read by the bot
    ],
    ids=["text", "png", "webm"],
)
def test_unknown_containers_are_unsupported(data: bytes) -> None:
    with pytest.raises(AudioRejected) as caught:
        inspect_audio(data)
    assert caught.value.problem is AudioProblem.UNSUPPORTED


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_truncated_ogg_is_corrupt(cut: float) -> None:
    data = encoded(2.0, "OGG", "OPUS")
    with pytest.raises(AudioRejected) as caught:
        inspect_audio(data[: int(len(data) * cut)])
    assert caught.value.problem is AudioProblem.CORRUPT


def test_wav_header_without_samples_is_corrupt() -> None:
    with pytest.raises(AudioRejected) as caught:
        inspect_audio(wav_bytes(0.0))
    assert caught.value.problem is AudioProblem.CORRUPT


def test_empty_file() -> None:
    with pytest.raises(AudioRejected) as caught:
        inspect_audio(b"")
    assert caught.value.problem is AudioProblem.EMPTY


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(
        [
            b"",
            b"OggS",
            b"RIFF\x24\x00\x00\x00WAVEfmt ",
            b"\x00\x00\x00\x18ftypM4A ",
            b"fLaC",
            b"ID3",
        ]
    ),
    tail=st.binary(max_size=2048),
)
def test_any_bytes_give_a_clip_or_a_reason(prefix: bytes, tail: bytes) -> None:
    try:
        clip = inspect_audio(prefix + tail)
    except AudioRejected as rejected:
        assert rejected.problem in AudioProblem
    else:
        assert 0 < clip.duration_seconds <= AudioLimits().max_seconds


def m4a_header(seconds: float, timescale: int = 44_100) -> bytes:
    """The boxes of an iOS voice memo (M4A) that say its length: ftyp, moov/mvhd, a sound track
    with its mdhd (no samples: enough for the container check, which never decodes audio)."""

    def box(name: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), name) + payload

    def full_box(name: bytes, payload: bytes) -> bytes:
        return box(name, b"\x00\x00\x00\x00" + payload)

    duration = int(seconds * timescale)
    mdhd = full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, timescale, duration, 0x55C4, 0))
    hdlr = full_box(b"hdlr", struct.pack(">I4s", 0, b"soun") + b"\x00" * 12 + b"Son\x00")
    mvhd = full_box(b"mvhd", struct.pack(">IIII", 0, 0, 1000, int(seconds * 1000)) + bytes(80))
    track = box(b"trak", box(b"mdia", mdhd + hdlr + box(b"minf", box(b"stbl", b""))))
    return box(b"ftyp", b"M4A \x00\x00\x00\x00M4A mp42isom") + box(b"moov", mvhd + track)


def test_m4a_duration_is_read_from_its_boxes() -> None:
    clip = inspect_audio(m4a_header(3.0))
    assert clip.duration_seconds == pytest.approx(3.0)
    assert clip.file_name == "voix.m4a"
    with pytest.raises(AudioRejected) as caught:
        inspect_audio(m4a_header(400.0))
    assert caught.value.problem is AudioProblem.TOO_LONG
