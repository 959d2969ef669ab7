"""Why an attachment could not be had, as one typed error and one French sentence."""

from __future__ import annotations

from enum import StrEnum

from bot import texts


class AttachmentErrorReason(StrEnum):
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"  # the homeserver refused or failed the download
    TIMEOUT = "timeout"
    INTEGRITY = "integrity"  # hash mismatch or undecryptable ciphertext


class AttachmentError(Exception):
    """Raised by the gateway's download; `reason` picks the sentence users see."""

    def __init__(self, reason: AttachmentErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


def attachment_error_text(error: AttachmentError, max_mb: float) -> str:
    """The one sentence telling users what went wrong (never the technical detail)."""
    sentence = texts.ATTACHMENT_ERRORS[error.reason.value]
    return sentence.format(max_mb=f"{max_mb:g}")
