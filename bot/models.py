"""Typed models produced by the Matrix gateway.

Everything past the gateway works on these instead of raw nio objects or dicts, so the
router, the commands and the tests never depend on the shape of a Matrix event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from bot.attachments.models import Attachment

#: Key in the content of everything the bot sends: another instance (or this one) never answers it.
BOT_MARKER = "fr.gouv.tchap.bot"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MessageKind(StrEnum):
    TEXT = "m.text"
    NOTICE = "m.notice"
    EMOTE = "m.emote"
    ATTACHMENT = "attachment"  # m.file, m.image, m.audio, m.video: see `IncomingMessage.attachment`
    OTHER = "other"  # unknown msgtypes, unusable attachments: stored for nothing, never answered


class IncomingMessage(Frozen):
    """One `m.room.message` as the bot understands it (decrypted if it was encrypted)."""

    room_id: str
    event_id: str
    sender: str
    sender_name: str = Field(description="Display name of the sender in this room, or the user ID")
    kind: MessageKind
    body: str
    formatted_body: str | None = None
    timestamp_ms: int
    mentioned_user_ids: tuple[str, ...] | None = Field(
        default=None, description="`m.mentions.user_ids`; None when the client sent no m.mentions"
    )
    reply_to_event_id: str | None = None
    thread_root_id: str | None = None
    replaces_event_id: str | None = Field(
        default=None, description="Set on edits (`m.replace`): the event being edited"
    )
    encrypted: bool = False
    attachment: Attachment | None = Field(
        default=None, description="Set (with kind ATTACHMENT) on files, images, sounds, videos"
    )
    scheduled: bool = Field(
        default=False, description="Posted by a schedule, not typed: no reply relation"
    )
    from_bot: bool = Field(
        default=False,
        description="Carries BOT_MARKER: written by an instance of this bot, never a trigger",
    )


class RoomInvite(Frozen):
    room_id: str
    inviter: str
    is_direct: bool = False


class Redaction(Frozen):
    room_id: str
    event_id: str
    redacts: str
    sender: str


class UndecryptableMessage(Frozen):
    """A message whose room key never came (timeout) or was refused by the sender's device."""

    room_id: str
    event_id: str
    sender: str
    session_id: str
    timestamp_ms: int
    thread_root_id: str | None = None
    reason: str = Field(
        default="timeout", description="`timeout`, or `withheld:<code>` (e.g. m.unverified)"
    )


class ReadReceipt(Frozen):
    """A member's public read receipt (`m.read`); thread '' is the room's main timeline
    (unthreaded and `main` receipts), otherwise the thread root's event ID."""

    room_id: str
    user_id: str
    event_id: str
    read_at_ms: int
    thread: str = ""


class RoomContext(Frozen):
    """What the bot knows about the room a message came from."""

    room_id: str
    name: str
    is_direct: bool
    encrypted: bool


@dataclass(frozen=True)
class Invocation:
    """`!resume 2h` → word `resume`, arguments `2h`, prefix `!`."""

    word: str
    arguments: str
    prefix: str


class Action(StrEnum):
    IGNORE = "ignore"  # the bot's own events, unknown kinds
    STORE = "store"  # kept for summaries and reply context, never answered
    QUESTION = "question"
    COMMAND = "command"


class Decision(Frozen):
    action: Action
    text: str = ""  # the message without the reply fallback (what summaries read)
    question: str = ""  # for the model: the leading mention removed as well
    invocation: Invocation | None = None


class Job(Frozen):
    """A claimed trigger: the message and what `bot.classify` decided it is (kept in SQLite)."""

    message: IncomingMessage
    decision: Decision | None = None  # None only in rows written before decisions were kept


class Reaction(Frozen):
    """An `m.reaction` annotation (`m.relates_to.key` on `m.relates_to.event_id`)."""

    room_id: str
    event_id: str
    sender: str
    reacts_to: str
    key: str
    rating: int | None = Field(
        default=None, description="1 for 👍, -1 for 👎 (any skin tone), None for other keys"
    )
