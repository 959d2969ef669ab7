"""Edge parser: raw Matrix event dicts in, typed models out.

Everything a homeserver or a client sends is untrusted: fields may be missing, of the wrong
type, huge, or full of control characters. These functions are pure, never raise, and answer
None for anything that is not a usable event, so the gateway can call them without guards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.attachments import ATTACHMENT_MSGTYPES, parse_attachment
from bot.models import BOT_MARKER, IncomingMessage, MessageKind, Reaction, Redaction

BODY_MAX_CHARS = 20_000
"""A question longer than this is truncated: a pasted document must not blow up the prompt."""

FORMATTED_BODY_MAX_CHARS = 100_000
SENDER_NAME_MAX_CHARS = 256
_ID_MAX_CHARS = 255  # the spec's limit for user, room and event IDs (in bytes; chars is laxer)
_TS_MAX = 2**63 - 1  # fits SQLite's INTEGER

HTML_FORMAT = "org.matrix.custom.html"
_EDIT_FALLBACK_PREFIX = "* "

_KINDS: dict[str, MessageKind] = {
    "m.text": MessageKind.TEXT,
    "m.notice": MessageKind.NOTICE,
    "m.emote": MessageKind.EMOTE,
}

# C0 controls except \t and \n, DEL, and lone surrogates (JSON allows "\ud800"; they would make
# the text unencodable as UTF-8 later, in SQLite or in the request to the model).
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_CRLF = re.compile("\r\n?")


def sanitize_text(value: object, max_chars: int) -> str:
    """Return `value` as clean text: "" if not a str, newlines normalised, controls removed, capped.

    The cap is applied before the (linear) cleaning too, so a pathological input costs little.
    """
    if not isinstance(value, str):
        return ""
    text = value[: max_chars * 2]
    text = _CRLF.sub("\n", text)
    text = _UNSAFE_CHARS.sub("", text)
    return text[:max_chars]


def _valid_id(value: object) -> str | None:
    """An ID usable as a key: a non-empty str, not absurdly long, without control characters."""
    if not isinstance(value, str) or not value or len(value) > _ID_MAX_CHARS:
        return None
    if value != value.strip() or _UNSAFE_CHARS.search(value) or "\n" in value or "\t" in value:
        return None
    return value


def _as_dict(value: object) -> Mapping[str, object] | None:
    return value if isinstance(value, dict) else None


def _timestamp(value: object) -> int:
    # bool is an int subclass: `true` is not a timestamp.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _TS_MAX:
        return value
    return 0


def _kind(content: Mapping[str, object]) -> MessageKind:
    msgtype = content.get("msgtype")
    if isinstance(msgtype, str):
        return _KINDS.get(msgtype, MessageKind.OTHER)
    return MessageKind.OTHER


def _formatted_body(content: Mapping[str, object]) -> str | None:
    if content.get("format") != HTML_FORMAT or not isinstance(content.get("formatted_body"), str):
        return None
    return sanitize_text(content.get("formatted_body"), FORMATTED_BODY_MAX_CHARS)


def _mentions(content: Mapping[str, object]) -> tuple[str, ...] | None:
    """`m.mentions.user_ids`: None means "the client sent no m.mentions", () means "nobody"."""
    mentions = _as_dict(content.get("m.mentions"))
    if mentions is None:
        return None
    user_ids = mentions.get("user_ids")
    if not isinstance(user_ids, list):
        return ()
    valid = (_valid_id(item) for item in user_ids)
    return tuple(dict.fromkeys(uid for uid in valid if uid is not None))


def _strip_edit_prefix(text: str) -> str:
    return text.removeprefix(_EDIT_FALLBACK_PREFIX)


def parse_message(
    room_id: str, source: dict[str, object], sender_name: str, encrypted: bool
) -> IncomingMessage | None:
    """Turn an `m.room.message` event (nio's `event.source`, decrypted) into an IncomingMessage.

    Returns None for what the bot cannot use: no event ID or sender, redacted or empty content,
    another event type. Never raises, whatever the input.
    """
    try:
        return _parse_message(room_id, source, sender_name, encrypted)
    except Exception:  # pragma: no cover - defence in depth; the parser is written not to raise
        return None


def _parse_message(
    room_id: str, source: object, sender_name: object, encrypted: object
) -> IncomingMessage | None:
    event = _as_dict(source)
    if event is None or not isinstance(room_id, str):
        return None
    event_type = event.get("type")
    if event_type is not None and event_type != "m.room.message":
        return None
    event_id = _valid_id(event.get("event_id"))
    sender = _valid_id(event.get("sender"))
    content = _as_dict(event.get("content"))
    if event_id is None or sender is None or not content:
        return None
    unsigned = _as_dict(event.get("unsigned"))
    if unsigned is not None and unsigned.get("redacted_because") is not None:
        return None

    reply_to: str | None = None
    thread_root: str | None = None
    replaces: str | None = None
    relates_to = _as_dict(content.get("m.relates_to"))
    if relates_to is not None:
        rel_type = relates_to.get("rel_type")
        in_reply_to = _as_dict(relates_to.get("m.in_reply_to"))
        if in_reply_to is not None:
            reply_to = _valid_id(in_reply_to.get("event_id"))
        if rel_type == "m.thread":
            thread_root = _valid_id(relates_to.get("event_id"))
            # In a thread, `m.in_reply_to` with is_falling_back is only the latest thread event,
            # put there for clients without threads: not a reply the user chose.
            if relates_to.get("is_falling_back") is True:
                reply_to = None
        elif rel_type == "m.replace":
            replaces = _valid_id(relates_to.get("event_id"))
            reply_to = None

    # An edit's own body is a "* new text" fallback; the real new text is in m.new_content.
    text_source = content
    new_content = _as_dict(content.get("m.new_content")) if replaces is not None else None
    if new_content is not None and isinstance(new_content.get("body"), str):
        text_source = new_content
        body = sanitize_text(new_content.get("body"), BODY_MAX_CHARS)
        formatted = _formatted_body(new_content)
    else:
        body = sanitize_text(content.get("body"), BODY_MAX_CHARS)
        formatted = _formatted_body(content)
        if replaces is not None:
            body = _strip_edit_prefix(body)
            formatted = None if formatted is None else _strip_edit_prefix(formatted)

    mentions = _mentions(text_source)
    if mentions is None and text_source is not content:
        mentions = _mentions(content)

    name = sanitize_text(sender_name, SENDER_NAME_MAX_CHARS).strip() or sender
    kind = _kind(text_source if "msgtype" in text_source else content)
    attachment = None
    if replaces is None and content.get("msgtype") in ATTACHMENT_MSGTYPES:
        attachment = parse_attachment(content)
        kind = MessageKind.ATTACHMENT if attachment is not None else MessageKind.OTHER
    return IncomingMessage(
        room_id=room_id,
        event_id=event_id,
        sender=sender,
        sender_name=name,
        kind=kind,
        body=body,
        formatted_body=formatted,
        timestamp_ms=_timestamp(event.get("origin_server_ts")),
        mentioned_user_ids=mentions,
        reply_to_event_id=reply_to,
        thread_root_id=thread_root,
        replaces_event_id=replaces,
        encrypted=encrypted is True,
        attachment=attachment,
        from_bot=BOT_MARKER in content,
    )


def parse_redaction(room_id: str, source: dict[str, object]) -> Redaction | None:
    """Turn an `m.room.redaction` event into a Redaction, or None if unusable. Never raises.

    Room versions up to 10 put `redacts` at the top level; v11+ moved it into the content
    (servers often send both).
    """
    try:
        event = _as_dict(source)
        if event is None or not isinstance(room_id, str):
            return None
        event_type = event.get("type")
        if event_type is not None and event_type != "m.room.redaction":
            return None
        event_id = _valid_id(event.get("event_id"))
        sender = _valid_id(event.get("sender"))
        redacts = _valid_id(event.get("redacts"))
        if redacts is None:
            content = _as_dict(event.get("content"))
            redacts = None if content is None else _valid_id(content.get("redacts"))
        if event_id is None or sender is None or redacts is None:
            return None
        return Redaction(room_id=room_id, event_id=event_id, redacts=redacts, sender=sender)
    except Exception:  # pragma: no cover - defence in depth
        return None


THUMBS_UP = "\U0001f44d"
THUMBS_DOWN = "\U0001f44e"
REACTION_KEY_MAX_CHARS = 64
# Variation selector 16 and the five skin-tone modifiers: 👍🏽 and 👍️ are still 👍.
_EMOJI_DECORATIONS = re.compile("[\ufe0f\U0001f3fb-\U0001f3ff]")


def reaction_rating(key: str) -> int | None:
    bare = _EMOJI_DECORATIONS.sub("", key).strip()
    return {THUMBS_UP: 1, THUMBS_DOWN: -1}.get(bare)


def parse_reaction(room_id: str, source: dict[str, object]) -> Reaction | None:
    """Turn an `m.reaction` event into a Reaction, or None if malformed. Never raises."""
    try:
        event = _as_dict(source)
        if event is None or not isinstance(room_id, str) or event.get("type") != "m.reaction":
            return None
        unsigned = _as_dict(event.get("unsigned"))
        if unsigned is not None and unsigned.get("redacted_because") is not None:
            return None
        event_id = _valid_id(event.get("event_id"))
        sender = _valid_id(event.get("sender"))
        content = _as_dict(event.get("content"))
        relates_to = None if content is None else _as_dict(content.get("m.relates_to"))
        if event_id is None or sender is None or relates_to is None:
            return None
        if relates_to.get("rel_type") != "m.annotation":
            return None
        reacts_to = _valid_id(relates_to.get("event_id"))
        key = relates_to.get("key")
        if reacts_to is None or not isinstance(key, str) or not key:
            return None
        if len(key) > REACTION_KEY_MAX_CHARS or _UNSAFE_CHARS.search(key):
            return None
        return Reaction(
            room_id=room_id,
            event_id=event_id,
            sender=sender,
            reacts_to=reacts_to,
            key=key,
            rating=reaction_rating(key),
        )
    except Exception:  # pragma: no cover - defence in depth
        return None
