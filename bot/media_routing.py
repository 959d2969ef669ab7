"""Voice messages and images on their way to the model, apart from the router's text path.

A picture or a voice message is kept as a placeholder (summaries, context) and becomes a
question only when it is addressed to the bot. In a DM the question usually comes right
after the picture, typed as its own message: the picture waits for it a few seconds (in
memory, claimed in SQLite) and is described alone if none comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from bot import texts
from bot.answer.media import MediaError, MediaService, is_image, is_voice, placeholder
from bot.answer.replies import Outbox
from bot.models import Action, Decision, IncomingMessage, RoomContext
from bot.ops import metrics
from bot.room_config import RoomConfigRepository
from bot.store import Store
from bot.store.database import StoredMessage
from bot.triggers import BotIdentity, mentions_bot, strip_bot_mention
from config.room_settings import AnswerMode, RoomSettings
from config.settings import Settings

log = structlog.get_logger(__name__)


class Schedule(Protocol):
    """The router's `_schedule`: queue a claimed trigger's job in its room."""

    def __call__(
        self,
        message: IncomingMessage,
        decision: Decision,
        received_at: float | None = None,
        *,
        just_claimed: bool = False,
    ) -> None: ...


@dataclass
class _WaitingImage:
    image: IncomingMessage
    decision: Decision
    timer: asyncio.TimerHandle


def is_media(message: IncomingMessage) -> bool:
    return is_voice(message) or is_image(message)


class MediaRouting:
    """The router's media half. `in_flight` is the router's own table of claimed, unfinished
    triggers (a waiting picture is in flight); `schedule` queues a claimed trigger's job."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        room_config: RoomConfigRepository,
        outbox: Outbox,
        media: MediaService,
        *,
        in_flight: dict[str, IncomingMessage],
        schedule: Schedule,
        identity: Callable[[str], BotIdentity],
        replied_sender: Callable[[IncomingMessage], Awaitable[str | None]],
    ) -> None:
        self._settings = settings
        self._store = store
        self._room_config = room_config
        self._outbox = outbox
        self._media = media
        self._in_flight = in_flight
        self._schedule = schedule
        self._identity = identity
        self._replied_sender = replied_sender
        # DM images waiting for the question typed after them, and the question that took one.
        self._waiting_images: dict[tuple[str, str], _WaitingImage] = {}
        self._image_of_question: dict[str, IncomingMessage] = {}

    async def on_media(
        self, message: IncomingMessage, room: RoomContext, answerable: bool, received_at: float
    ) -> None:
        """A voice message or an image: kept as a placeholder for summaries and context;
        a question when it is addressed to the bot (DM, "tous" rooms, a reply to the bot, an
        image whose caption mentions it)."""
        stored = StoredMessage(
            event_id=message.event_id,
            room_id=message.room_id,
            sender=message.sender,
            sender_name=message.sender_name,
            body=placeholder(message),
            timestamp_ms=message.timestamp_ms,
            thread_root_id=message.thread_root_id,
        )
        if (
            not answerable
            or message.from_bot  # another bot's pictures and sounds: never a question
            or not self._settings.is_allowed_user(message.sender)
        ):
            await self._store.messages.save([stored])
            return
        if message.event_id in self._in_flight:
            return
        if not await self._for_bot(message, room):
            await self._store.messages.save([stored])
            return
        question = self._question_in_caption(message)
        decision = Decision(action=Action.QUESTION, text=stored.body, question=question)
        if not await self._store.triggers.claim(message, stored, decision):
            return
        wait = self._settings.image_question_wait_seconds
        if (
            is_image(message)
            and wait > 0
            and not question
            and (room.is_direct or self._room_config.get(message.room_id).mode is AnswerMode.ALL)
        ):
            self._wait_for_question(message, decision, wait)
            return
        self._schedule(message, decision, received_at, just_claimed=True)

    async def _for_bot(self, message: IncomingMessage, room: RoomContext) -> bool:
        room_settings = self._room_config.get(message.room_id)
        if (
            is_voice(message)
            and not room.is_direct
            and not self._media.voice_enabled(room_settings)
        ):
            return False  # a group room that turned voice off: silence, not a notice each time
        if room.is_direct or room_settings.mode is AnswerMode.ALL:
            return True
        identity = self._identity(message.room_id)
        attachment = message.attachment
        if attachment is not None and attachment.caption and mentions_bot(message, identity):
            return True
        if message.reply_to_event_id is None:
            return False
        return await self._replied_sender(message) == identity.user_id

    def _question_in_caption(self, message: IncomingMessage) -> str:
        """The question an image carries in its caption (mention removed), or ""."""
        attachment = message.attachment
        if attachment is None or not attachment.caption or not is_image(message):
            return ""
        return strip_bot_mention(attachment.caption, self._identity(message.room_id)).strip()

    def _wait_for_question(self, image: IncomingMessage, decision: Decision, wait: float) -> None:
        """In a DM the question usually follows the picture: keep it (in memory) for `wait`
        seconds; the next question from its sender takes it, else it is described."""
        key = (image.room_id, image.sender)
        previous = self._waiting_images.pop(key, None)
        if previous is not None:
            previous.timer.cancel()
            self._in_flight.pop(previous.image.event_id, None)
            self._schedule(previous.image, previous.decision)
        self._in_flight[image.event_id] = image
        timer = asyncio.get_running_loop().call_later(wait, self._wait_over, key, image)
        self._waiting_images[key] = _WaitingImage(image, decision, timer)

    def _wait_over(self, key: tuple[str, str], image: IncomingMessage) -> None:
        waiting = self._waiting_images.get(key)
        if waiting is not None and waiting.image.event_id == image.event_id:
            del self._waiting_images[key]
            self._schedule(image, waiting.decision)  # no question came: describe it

    def take_waiting_image(self, message: IncomingMessage) -> None:
        """A DM question typed right after an image is about that image."""
        waiting = self._waiting_images.pop((message.room_id, message.sender), None)
        if waiting is not None:
            waiting.timer.cancel()
            self._image_of_question[message.event_id] = waiting.image

    async def image_for(self, message: IncomingMessage) -> IncomingMessage | None:
        """The image a text question is about: the one it took in a DM, or the one it replies
        to (its waiting trigger is finished here)."""
        image = self._image_of_question.pop(message.event_id, None)
        if image is not None:
            self._in_flight.pop(image.event_id, None)
            await self._store.triggers.finish(image, "answered", question=False)
            return image
        if message.reply_to_event_id is None:
            return None
        return await self._media.replied_image(message)

    async def answer(
        self,
        message: IncomingMessage,
        room: RoomContext,
        room_settings: RoomSettings,
        received_at: float | None,
        image: IncomingMessage,
        question: str,
    ) -> None:
        """Answer a voice message, or a question about `image` (which may be `message`); a
        file that cannot be used gets one sentence and the room goes on."""
        try:
            if is_voice(message):
                if not self._media.voice_enabled(room_settings):
                    await self._outbox.reply(
                        message, texts.VOICE_DISABLED, purpose="media-error", notice=True
                    )
                    await self._store.triggers.finish(message, "skipped")
                    return
                await self._media.answer_voice(message, room, room_settings, received_at)
            else:
                await self._media.answer_image(
                    message, image, question or None, room, room_settings, received_at
                )
        except MediaError as error:
            metrics.ERRORS.labels(f"media_{error.reason}").inc()
            log.info("router.media_refused", reason=error.reason)
            await self._outbox.reply(message, error.text, purpose="media-error", notice=True)
            await self._store.triggers.finish(message, "failed")
