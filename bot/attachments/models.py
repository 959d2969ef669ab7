"""Typed attachments, as parsed at the Matrix edge (nothing inside sees the event's dicts)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class AttachmentKind(StrEnum):
    FILE = "m.file"
    IMAGE = "m.image"
    AUDIO = "m.audio"
    VIDEO = "m.video"


class EncryptedFile(BaseModel):
    """The `file` object of an attachment sent in an encrypted room (AES-256-CTR, v2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="mxc:// URL of the ciphertext")
    key: str = Field(description="`key.k`: the AES key, unpadded base64url (JWK)")
    iv: str = Field(description="Unpadded base64 16-byte counter block")
    sha256: str = Field(description="`hashes.sha256`: unpadded base64 hash of the ciphertext")


class Attachment(BaseModel):
    """One file, image, sound or video shared in a room.

    Everything here comes from the sender's client: the name, the declared size and mimetype
    are claims, not facts. The size is checked again on the downloaded bytes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AttachmentKind
    name: str = Field(description="File name (`filename`, else `body`), without any path")
    caption: str | None = Field(
        default=None, description="`body` when `filename` is set and differs (spec v1.10)"
    )
    mimetype: str | None = Field(default=None, description="Declared mimetype, lowercase")
    size: int | None = Field(default=None, description="Declared size in bytes")
    url: str | None = Field(default=None, description="mxc:// URL (clear rooms)")
    encrypted_file: EncryptedFile | None = Field(
        default=None, description="Decryption info (encrypted rooms)"
    )
    duration_ms: int | None = None
    width: int | None = None
    height: int | None = None
    is_voice: bool = Field(default=False, description="`org.matrix.msc3245.voice` marker")

    @property
    def mxc_url(self) -> str:
        """Where the bytes are: the ciphertext's URL in encrypted rooms, else `url`."""
        if self.encrypted_file is not None:
            return self.encrypted_file.url
        assert self.url is not None  # parse_attachment guarantees one of the two
        return self.url

    @property
    def extension(self) -> str:
        """Lowercase extension of the name, without the dot ("" when none)."""
        stem, dot, ext = self.name.rpartition(".")
        return ext.lower() if dot and stem and len(ext) <= 8 else ""
