"""Decide whether a message is addressed to the bot, and clean the mention off the question.

Tchap clients mention in three shapes (intentional `m.mentions`, an HTML pill, or plain text in
the body), so every shape is checked. Pure functions on IncomingMessage: no I/O, never raise on
a message that `bot.events.parse_message` produced.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from bot.answer.inbound import extract_user_links, strip_reply_fallback
from bot.models import Frozen, IncomingMessage

_TCHAP_SUFFIX = re.compile(r"\s*\[[^\[\]]*\]\s*$")


class BotIdentity(Frozen):
    """Who the bot is in a room, as users may write it."""

    user_id: str
    display_names: tuple[str, ...] = ()  # e.g. ("Assistant IA [DINUM]",)


def _name_variants(display_names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Full names and suffix-less names ("Assistant IA [DINUM]" → "Assistant IA")."""
    full: dict[str, None] = {}
    bare: dict[str, None] = {}
    for raw in display_names:
        name = unicodedata.normalize("NFC", raw).strip()
        if not name:
            continue
        stripped = _TCHAP_SUFFIX.sub("", name).strip()
        if stripped and stripped != name:
            full[name] = None
            bare[stripped] = None
        else:
            # No suffix: still require that no *other* suffix follows ("Assistant IA [AUTRE]").
            bare[name] = None
    # Longest first so the alternation prefers "Name [Suffix]" over "Name".
    return (
        tuple(sorted(full, key=len, reverse=True)),
        tuple(sorted(bare, key=len, reverse=True)),
    )


def _name_pattern(name: str) -> str:
    """Escape a name, letting any run of whitespace (spaces, NBSP, newline) match any other."""
    return r"\s+".join(re.escape(word) for word in name.split())


@lru_cache(maxsize=64)
def _mention_regex(user_id: str, display_names: tuple[str, ...]) -> str:
    """The alternation matching one mention of the bot, bounded on both sides.

    The user ID must not run on into a longer ID ("...gouv.fr1", a recreated account); a bare
    name must not be another account's "Name [Other]".
    """
    full, bare = _name_variants(display_names)
    parts: list[str] = []
    if user_id:
        parts.append(re.escape(user_id) + r"(?![\w-]|[.:][\w-])")
    if full:
        parts.append("@?(?:" + "|".join(_name_pattern(n) for n in full) + r")(?!\w)")
    if bare:
        parts.append(
            "@?(?:" + "|".join(_name_pattern(n) for n in bare) + r")(?!\w)(?!\s*\[[^\[\]\n]*\])"
        )
    if not parts:
        return r"(?!)"  # matches nothing
    return "(?:" + "|".join(parts) + ")"


@lru_cache(maxsize=64)
def _search_regex(user_id: str, display_names: tuple[str, ...]) -> re.Pattern[str]:
    # Not after a word char or "@": "jean@Assistant IA" is not a mention.
    return re.compile(
        r"(?<![\w@])" + _mention_regex(user_id, display_names), re.IGNORECASE | re.UNICODE
    )


@lru_cache(maxsize=64)
def _leading_regex(user_id: str, display_names: tuple[str, ...]) -> re.Pattern[str]:
    # French typography puts a space before the colon: "Assistant IA : question".
    return re.compile(
        r"^\s*" + _mention_regex(user_id, display_names) + r"\s*[:,]?\s*",
        re.IGNORECASE | re.UNICODE,
    )


def _visible_text(message: IncomingMessage) -> tuple[str, str | None]:
    """Body and HTML without the reply fallback, which quotes someone else's message."""
    if message.reply_to_event_id is None and message.thread_root_id is None:
        return message.body, message.formatted_body
    return strip_reply_fallback(message.body, message.formatted_body)


def mentions_bot(message: IncomingMessage, bot: BotIdentity) -> bool:
    """True if the message mentions the bot in any of the shapes Tchap clients send.

    Checks `m.mentions`, pills in the HTML, and the user ID or a display name in the body, always
    on the text without the reply fallback (a quoted "<@bot> ..." is not a new mention).
    """
    target = bot.user_id.casefold()
    if message.mentioned_user_ids and any(
        uid.casefold() == target for uid in message.mentioned_user_ids
    ):
        return True
    body, formatted = _visible_text(message)
    if formatted and any(link.casefold() == target for link in extract_user_links(formatted)):
        return True
    if message.mentioned_user_ids is not None:
        # Intentional mentions (spec v1.7): a client that sends `m.mentions` said whom it
        # mentions; "j'en ai parlé à l'Assistant IA hier" is not a question for the bot.
        return False
    text = unicodedata.normalize("NFC", body)
    return _search_regex(bot.user_id, bot.display_names).search(text) is not None


def strip_bot_mention(text: str, bot: BotIdentity) -> str:
    """Remove a mention of the bot at the start of `text`, with its ":" or "," and spaces.

    So the model reads "Quelle est la date ?" and not "Assistant IA [DINUM]: Quelle est la date ?".
    A mention elsewhere in the sentence is part of the question and stays.
    """
    normalized = unicodedata.normalize("NFC", text)
    match = _leading_regex(bot.user_id, bot.display_names).match(normalized)
    if match is None or match.end() == 0:
        return text
    return normalized[match.end() :]
