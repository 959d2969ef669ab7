"""`m.file` / `m.image` / `m.audio` / `m.video` content → `Attachment`. Pure; never raises.

Hostile input is expected: a name may hold a path or control characters, a size may be a
string, a negative number or a bool, a URL may not be an mxc:// URL. Anything unusable gives
None (no attachment) or a safe default (no size, no duration), never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.attachments.models import Attachment, AttachmentKind, EncryptedFile

ATTACHMENT_MSGTYPES: dict[str, AttachmentKind] = {kind.value: kind for kind in AttachmentKind}
NAME_MAX_CHARS = 255
CAPTION_MAX_CHARS = 4_000
MIMETYPE_MAX_CHARS = 127
VOICE_MARKERS = ("org.matrix.msc3245.voice", "org.matrix.msc3245.voice.v2")
_INT_MAX = 2**53  # JSON integers clients produce; also fits SQLite
_DIMENSION_MAX = 1_000_000

# mxc://<server name>/<media id>: media IDs are [A-Za-z0-9_-] (spec); server names are
# hostnames, IPv4/IPv6 literals, optional port. Nothing else may reach a download path.
_MXC = re.compile(r"mxc://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/[A-Za-z0-9_\-]{1,255}")
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]{1,256}={0,2}")
_MIMETYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+\-]*/[a-z0-9][a-z0-9!#$&^_.+\-]*")
_UNSAFE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def parse_attachment(content: Mapping[str, object]) -> Attachment | None:
    """The attachment of a message content, or None if it is not a usable one."""
    try:
        return _parse(content)
    except Exception:  # pragma: no cover - defence in depth; written not to raise
        return None


def _parse(content: Mapping[str, object]) -> Attachment | None:
    msgtype = content.get("msgtype")
    kind = ATTACHMENT_MSGTYPES.get(msgtype) if isinstance(msgtype, str) else None
    if kind is None:
        return None
    encrypted = _encrypted_file(content.get("file"))
    url = _mxc(content.get("url"))
    if encrypted is None and url is None:
        return None
    info = _dict(content.get("info")) or {}
    body = _clean(content.get("body"), CAPTION_MAX_CHARS)
    filename = _file_name(content.get("filename"))
    name = filename or _file_name(body) or _default_name(kind)
    caption = body if filename and body and body != filename else None
    duration = _int(info.get("duration"))
    audio = _dict(content.get("org.matrix.msc1767.audio"))
    if duration is None and audio is not None:
        duration = _int(audio.get("duration"))
    return Attachment(
        kind=kind,
        name=name,
        caption=caption,
        mimetype=_mimetype(info.get("mimetype")),
        size=_int(info.get("size")),
        url=None if encrypted is not None else url,
        encrypted_file=encrypted,
        duration_ms=duration,
        width=_int(info.get("w"), _DIMENSION_MAX),
        height=_int(info.get("h"), _DIMENSION_MAX),
        is_voice=kind is AttachmentKind.AUDIO and any(m in content for m in VOICE_MARKERS),
    )


def _dict(value: object) -> Mapping[str, object] | None:
    return value if isinstance(value, dict) else None


def _int(value: object, maximum: int = _INT_MAX) -> int | None:
    """A non-negative JSON integer (floats with no fraction too: some clients send 12.0)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= maximum:
        return value
    return None


def _clean(value: object, max_chars: int) -> str:
    if not isinstance(value, str):
        return ""
    return _UNSAFE.sub("", value[: max_chars * 2]).strip()[:max_chars]


def _file_name(value: object) -> str:
    """A file name safe to show and to store: no directories, no controls, bounded."""
    name = _clean(value, NAME_MAX_CHARS * 4)
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    return name[:NAME_MAX_CHARS]


def _default_name(kind: AttachmentKind) -> str:
    return {
        AttachmentKind.FILE: "fichier",
        AttachmentKind.IMAGE: "image",
        AttachmentKind.AUDIO: "audio",
        AttachmentKind.VIDEO: "video",
    }[kind]


def _mimetype(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > MIMETYPE_MAX_CHARS:
        return None
    mimetype = value.split(";", 1)[0].strip().lower()
    return mimetype if _MIMETYPE.fullmatch(mimetype) else None


def _mxc(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= 512 and _MXC.fullmatch(value):
        return value
    return None


def _b64(value: object) -> str | None:
    if isinstance(value, str) and _BASE64.fullmatch(value):
        return value
    return None


def _encrypted_file(value: object) -> EncryptedFile | None:
    """The `file` object: url, key.k, iv and hashes.sha256 must all be there and well-formed."""
    file = _dict(value)
    if file is None:
        return None
    key = _dict(file.get("key"))
    hashes = _dict(file.get("hashes"))
    url = _mxc(file.get("url"))
    k = _b64(key.get("k")) if key is not None else None
    iv = _b64(file.get("iv"))
    sha256 = _b64(hashes.get("sha256")) if hashes is not None else None
    if url is None or k is None or iv is None or sha256 is None:
        return None
    if key is not None and key.get("alg", "A256CTR") != "A256CTR":
        return None
    return EncryptedFile(url=url, key=k, iv=iv, sha256=sha256)
