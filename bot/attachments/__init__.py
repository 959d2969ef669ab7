"""Files, images, voice and video shared in rooms: the parts that do not touch matrix-nio.

The Matrix edge (`bot.matrix.events`) turns `m.file`, `m.image`, `m.audio` and `m.video` contents into an
`Attachment` with `parse_attachment`; the gateway downloads (and decrypts) it and raises an
`AttachmentError` that callers turn into one French sentence with `attachment_error_text`.
"""

from bot.attachments.errors import AttachmentError, AttachmentErrorReason, attachment_error_text
from bot.attachments.models import Attachment, AttachmentKind, EncryptedFile
from bot.attachments.parse import ATTACHMENT_MSGTYPES, parse_attachment

__all__ = [
    "ATTACHMENT_MSGTYPES",
    "Attachment",
    "AttachmentError",
    "AttachmentErrorReason",
    "AttachmentKind",
    "EncryptedFile",
    "attachment_error_text",
    "parse_attachment",
]
