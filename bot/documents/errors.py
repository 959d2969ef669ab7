"""What can go wrong with a document, as one typed error (the sentence is in bot.texts)."""

from __future__ import annotations

from enum import StrEnum


class DocumentErrorReason(StrEnum):
    UNSUPPORTED = "unsupported"
    CORRUPT = "corrupt"
    PROTECTED = "protected"
    EMPTY = "empty"
    SCANNED = "scanned"  # no text layer, and no OCR configured (or it failed)
    TOO_MANY_PAGES = "too_many_pages"
    TOO_LARGE = "too_large"  # decompressed size over the cap (zip bombs)
    TIMEOUT = "timeout"
    DOWNLOAD = "download"  # the attachment could not be had (see AttachmentError)


class DocumentError(Exception):
    def __init__(self, reason: DocumentErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[DocumentError], tuple[DocumentErrorReason, str]]:
        return (DocumentError, (self.reason, self.detail))  # crosses the worker boundary
