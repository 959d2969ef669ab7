"""One pass decides what a message is: ignored, stored only, a question, or a command.

A pure function of the typed message and the facts the router gathered about its room, tested by
tables. The decision travels with the job (and in the trigger row), so a job resumed after a
restart is never parsed a second time.
"""

from __future__ import annotations

import re

from bot.answer.inbound import strip_reply_fallback
from bot.french import command_key
from bot.models import Action, Decision, Frozen, IncomingMessage, Invocation, MessageKind
from bot.triggers import BotIdentity, mentions_bot, strip_bot_mention

_COMMAND_WORD = re.compile(r"^([^\W\d_][\w-]{0,31})(?:\s+(.*))?$", re.DOTALL)
_ANSWERABLE_KINDS = frozenset({MessageKind.TEXT, MessageKind.EMOTE})


class RoomFacts(Frozen):
    """What the router knows about the room and sender when the message arrives."""

    bot: BotIdentity
    is_direct: bool
    answers_all: bool = False  # the room's moderators chose "answer every message"
    answerable: bool = True  # False for history replayed at start-up
    sender_allowed: bool = True
    replied_to_sender: str | None = None
    command_prefixes: tuple[str, ...] = ("!", "/")
    builtin_commands: frozenset[str] = frozenset()  # command_key() of names and aliases
    room_commands: frozenset[str] = frozenset()  # the room's own (custom) command names


def parse_invocation(
    text: str, prefixes: tuple[str, ...] | list[str], *, prefix_optional: bool = False
) -> Invocation | None:
    """`!resume 2h` → Invocation('resume', '2h', '!'). With a mention the prefix may be omitted."""
    stripped = text.strip()
    for prefix in sorted(prefixes, key=len, reverse=True):
        if stripped.startswith(prefix):
            match = _COMMAND_WORD.match(stripped[len(prefix) :])
            if match:
                return Invocation(match.group(1), (match.group(2) or "").strip(), prefix)
            return None
    if prefix_optional and prefixes:
        match = _COMMAND_WORD.match(stripped)
        if match:
            return Invocation(match.group(1), (match.group(2) or "").strip(), prefixes[0])
    return None


def classify(message: IncomingMessage, facts: RoomFacts) -> Decision:
    """Decide once what `message` asks of the bot."""
    if message.sender == facts.bot.user_id or message.kind is MessageKind.OTHER:
        return Decision(action=Action.IGNORE)
    if message.replaces_event_id is not None:
        return Decision(action=Action.IGNORE)  # edits update the stored text, never trigger
    text = (
        message.body
        if message.reply_to_event_id is None and message.thread_root_id is None
        else strip_reply_fallback(message.body, message.formatted_body)[0]
    )
    stored = Decision(action=Action.STORE, text=text)
    if (
        not facts.answerable
        or not facts.sender_allowed
        or message.from_bot  # another instance of this bot: two bots must never loop
        or message.kind not in _ANSWERABLE_KINDS  # notices are how bots talk: never triggers
    ):
        return stored
    question = strip_bot_mention(text, facts.bot).strip()
    had_leading_mention = question != text.strip()
    invocation = None
    if message.kind is MessageKind.TEXT:
        invocation = parse_invocation(question, facts.command_prefixes)
        if invocation is None and had_leading_mention:
            candidate = parse_invocation(question, facts.command_prefixes, prefix_optional=True)
            if candidate is not None and command_key(candidate.word) in facts.builtin_commands:
                invocation = candidate
    if not (facts.is_direct or facts.answers_all):
        mentioned = mentions_bot(message, facts.bot)
        known = invocation is not None and (
            command_key(invocation.word) in facts.builtin_commands
            or command_key(invocation.word) in facts.room_commands
        )
        # An unknown `!word` without a mention may belong to another bot in the room.
        addressed = mentioned or known or facts.replied_to_sender == facts.bot.user_id
        if not addressed:
            return stored
    if invocation is not None:
        return Decision(action=Action.COMMAND, text=text, question=question, invocation=invocation)
    return Decision(action=Action.QUESTION, text=text, question=question)
