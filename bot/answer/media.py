"""Voice messages and images: from an attachment to a transcript or a vision answer.

Every step that can fail on someone's file (download, decryption, container, duration,
decoding, the model's support) ends in one French sentence (`MediaError.text`); nothing here
raises anything else for bad input, so a room's other questions go on. Images live in memory
only for the time of their answer; the room's memory keeps a placeholder ("[image : nom]").
A transcript becomes the voice message's text in the store (summaries and context read it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import structlog

from bot import texts
from bot.answer.conversation import ConversationHandler, error_text
from bot.answer.llm import LLMClient
from bot.answer.llm_failures import LLMError, LLMErrorKind
from bot.attachments import Attachment, AttachmentError, AttachmentKind, attachment_error_text
from bot.attachments.images import ImageLimits, ImageProblem, ImageRejected, prepare_image
from bot.attachments.voice import (
    AudioLimits,
    AudioProblem,
    AudioRejected,
    check_declared,
    inspect_audio,
)
from bot.models import IncomingMessage, RoomContext
from bot.ops import metrics
from bot.store import Store
from bot.store.database import StoredMessage
from config.room_settings import RoomSettings
from config.settings import Settings

log = structlog.get_logger(__name__)

# What a service without the endpoint (404/405/501) or a model refusing an input (400, 415,
# 422) answers: the feature is not supported there.
NOT_SUPPORTED_STATUS = frozenset({400, 404, 405, 415, 422, 501})


class AttachmentSource(Protocol):
    """What the media handling needs from the Matrix gateway."""

    async def download_attachment(
        self, attachment: Attachment, max_bytes: int | None = None
    ) -> bytes: ...

    async def fetch_message(self, room_id: str, event_id: str) -> IncomingMessage | None: ...


class MediaError(Exception):
    """A voice message or image that cannot be used; `text` is the one sentence users see."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(reason)
        self.text = text
        self.reason = reason


@dataclass(frozen=True)
class VoiceTranscript:
    text: str
    duration_seconds: float


def is_voice(message: IncomingMessage) -> bool:
    return message.attachment is not None and message.attachment.kind is AttachmentKind.AUDIO


def is_image(message: IncomingMessage) -> bool:
    return message.attachment is not None and message.attachment.kind is AttachmentKind.IMAGE


def placeholder(message: IncomingMessage) -> str:
    """What the room's memory keeps of an attachment message before (or instead of) its text."""
    attachment = message.attachment
    if attachment is None:
        return message.body
    if attachment.kind is AttachmentKind.AUDIO:
        return texts.VOICE_PLACEHOLDER
    return texts.IMAGE_PLACEHOLDER.format(name=attachment.name)


IMAGE_PLACEHOLDER_START = texts.IMAGE_PLACEHOLDER.split("{", 1)[0]


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} secondes"
    minutes = seconds / 60
    return f"{minutes:g} minute" + ("s" if minutes >= 2 else "")


class MediaService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        llm: LLMClient,
        conversation: ConversationHandler,
        source: AttachmentSource,
    ) -> None:
        self._settings = settings
        self._store = store
        self._llm = llm
        self._conversation = conversation
        self._source = source
        self._audio_limits = AudioLimits(
            max_bytes=settings.attachment_max_bytes, max_seconds=settings.voice_max_seconds
        )
        self._image_limits = ImageLimits(
            max_bytes=settings.attachment_max_bytes,
            max_pixels=settings.image_max_pixels,
            max_side_px=settings.image_max_side_px,
        )

    def voice_enabled(self, room_settings: RoomSettings) -> bool:
        if room_settings.voix is not None:
            return room_settings.voix
        return self._settings.voice_messages

    async def replied_message(self, message: IncomingMessage) -> IncomingMessage | None:
        """The message `message` replies to, with its attachment, from the homeserver."""
        if message.reply_to_event_id is None:
            return None
        replied = await self._source.fetch_message(message.room_id, message.reply_to_event_id)
        return replied if replied is not None and replied.room_id == message.room_id else None

    async def replied_image(self, message: IncomingMessage) -> IncomingMessage | None:
        """The image a question replies to, if it does. The store says first whether the
        replied message can be an image (its placeholder), sparing the homeserver a request
        for every reply to a text."""
        if message.reply_to_event_id is None:
            return None
        stored = await self._store.messages.get(message.reply_to_event_id)
        if stored is not None and not stored.body.startswith(IMAGE_PLACEHOLDER_START):
            return None
        replied = await self.replied_message(message)
        return replied if replied is not None and is_image(replied) else None

    async def _download(self, attachment: Attachment) -> bytes:
        try:
            return await self._source.download_attachment(attachment)
        except AttachmentError as error:
            raise MediaError(
                attachment_error_text(error, self._settings.attachment_max_mb),
                f"download_{error.reason.value}",
            ) from None

    # --- Voice ------------------------------------------------------------------------------
    async def transcribe(self, message: IncomingMessage) -> VoiceTranscript:
        """The voice message's words; stored as its text. Raises MediaError."""
        attachment = message.attachment
        assert attachment is not None and attachment.kind is AttachmentKind.AUDIO
        if not self._settings.transcription_model:
            raise MediaError(texts.VOICE_UNSUPPORTED, "no_transcription_model")
        try:
            check_declared(attachment.size, attachment.duration_ms, self._audio_limits)
            data = await self._download(attachment)
            clip = await asyncio.to_thread(inspect_audio, data, self._audio_limits)
        except AudioRejected as rejected:
            raise self._audio_error(rejected.problem) from None
        try:
            transcript = await self._llm.transcribe(
                clip.data,
                clip.file_name,
                self._settings.transcription_model,
                self._settings.transcription_language or None,
            )
        except LLMError as error:
            if error.kind is LLMErrorKind.EMPTY:
                raise MediaError(texts.VOICE_EMPTY_TRANSCRIPT, "empty_transcript") from None
            if error.kind is LLMErrorKind.REJECTED and error.status in NOT_SUPPORTED_STATUS:
                raise MediaError(texts.VOICE_UNSUPPORTED, "transcription_unsupported") from None
            raise MediaError(error_text(error), f"transcription_{error.kind.value}") from None
        metrics.MEDIA_PROCESSED.labels("voice").inc()
        await self._store_text(message, transcript.text)
        log.info(
            "media.transcribed",
            room_id=message.room_id,
            event_id=message.event_id,
            duration_seconds=round(clip.duration_seconds, 1),
            chars=len(transcript.text),
        )
        return VoiceTranscript(text=transcript.text, duration_seconds=clip.duration_seconds)

    def _audio_error(self, problem: AudioProblem) -> MediaError:
        if problem is AudioProblem.TOO_LONG:
            text = texts.VOICE_TOO_LONG.format(minutes=_minutes(self._settings.voice_max_seconds))
        elif problem is AudioProblem.TOO_LARGE:
            text = texts.ATTACHMENT_ERRORS["too_large"].format(
                max_mb=f"{self._settings.attachment_max_mb:g}"
            )
        else:
            text = texts.VOICE_UNREADABLE
        return MediaError(text, f"audio_{problem.value}")

    async def _store_text(self, message: IncomingMessage, text: str) -> None:
        """The transcript becomes the message's text for summaries and reply context."""
        await self._store.messages.save(
            [
                StoredMessage(
                    event_id=message.event_id,
                    room_id=message.room_id,
                    sender=message.sender,
                    sender_name=message.sender_name,
                    body=text,
                    timestamp_ms=message.timestamp_ms,
                    thread_root_id=message.thread_root_id,
                )
            ]
        )
        await self._store.messages.apply_edit(
            message.room_id, message.event_id, message.sender, text
        )

    async def answer_voice(
        self,
        message: IncomingMessage,
        room: RoomContext,
        room_settings: RoomSettings,
        received_at: float | None = None,
    ) -> None:
        """A spoken question: transcribe, then answer with the transcript quoted first."""
        transcript = await self.transcribe(message)
        quoted = " ".join(transcript.text.split())
        await self._conversation.answer(
            message,
            transcript.text,
            room,
            room_settings,
            received_at,
            reply_prefix=texts.VOICE_TRANSCRIPT_QUOTE.format(transcript=quoted),
        )

    # --- Images -----------------------------------------------------------------------------
    async def image_data_url(self, image_message: IncomingMessage) -> str:
        """The image, downloaded and prepared for the vision model. Raises MediaError."""
        attachment = image_message.attachment
        assert attachment is not None and attachment.kind is AttachmentKind.IMAGE
        if not self._settings.vision_model:
            raise MediaError(texts.IMAGE_UNSUPPORTED, "no_vision_model")
        if (
            attachment.width is not None
            and attachment.height is not None
            and attachment.width * attachment.height > self._settings.image_max_pixels
        ):
            raise self._image_error(ImageProblem.TOO_MANY_PIXELS)
        data = await self._download(attachment)
        try:
            prepared = await asyncio.to_thread(prepare_image, data, self._image_limits)
        except ImageRejected as rejected:
            raise self._image_error(rejected.problem) from None
        metrics.MEDIA_PROCESSED.labels("image").inc()
        log.info(
            "media.image_prepared",
            room_id=image_message.room_id,
            event_id=image_message.event_id,
            source_format=prepared.source_format,
            width=prepared.width,
            height=prepared.height,
            bytes=len(prepared.data),
        )
        return prepared.data_url

    def _image_error(self, problem: ImageProblem) -> MediaError:
        if problem is ImageProblem.TOO_MANY_PIXELS:
            text = texts.IMAGE_TOO_MANY_PIXELS.format(
                max_mp=f"{self._settings.image_max_pixels / 1_000_000:g}"
            )
        elif problem is ImageProblem.TOO_LARGE:
            text = texts.ATTACHMENT_ERRORS["too_large"].format(
                max_mb=f"{self._settings.attachment_max_mb:g}"
            )
        else:
            text = texts.IMAGE_UNREADABLE
        return MediaError(text, f"image_{problem.value}")

    async def answer_image(
        self,
        trigger: IncomingMessage,
        image_message: IncomingMessage,
        question: str | None,
        room: RoomContext,
        room_settings: RoomSettings,
        received_at: float | None = None,
    ) -> None:
        """Answer `question` (or describe the image) about `image_message`, replying to
        `trigger` (the question's message, or the image itself)."""
        data_url = await self.image_data_url(image_message)
        asked = question or texts.IMAGE_DESCRIBE_REQUEST
        label = placeholder(image_message)
        await self._conversation.answer(
            trigger,
            asked,
            room,
            room_settings,
            received_at,
            images=(data_url,),
            recorded_question=f"{label}\n{question}" if question else label,
            failure_text=_vision_failure_text,
        )


def _vision_failure_text(error: LLMError) -> str:
    if error.kind is LLMErrorKind.REJECTED and error.status in NOT_SUPPORTED_STATUS:
        return texts.IMAGE_UNSUPPORTED
    return error_text(error)
