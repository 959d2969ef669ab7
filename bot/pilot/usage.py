"""What one handled trigger produced, noted along its path and recorded once at its end.

The router opens a note for each question or command (`tracking`); the conversation and the
commands fill it with a few lines (`current().answered(...)`), without new parameters on
every function in between. A note outside any trigger is a throwaway.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from bot.store.pilot import AnswerKind, Outcome, UsageKind


@dataclass
class UsageNote:
    kind: UsageKind = "question"
    outcome: Outcome = "answered"
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answer_kind: AnswerKind | None = None
    answer_event_ids: list[str] = field(default_factory=list)
    answer_room_id: str | None = None  # None: the trigger's room; a DM for private summaries
    record: bool = True

    def answered(
        self,
        kind: AnswerKind,
        event_ids: Sequence[str],
        model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        room_id: str | None = None,
    ) -> None:
        """An answer from the model was sent: its events may receive 👍/👎."""
        self.answer_room_id = room_id
        if kind != "question":
            self.kind = kind
        self.answer_kind = kind
        self.outcome = "answered"
        self.model = model
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.answer_event_ids.extend(event_ids)

    def used_model(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens spent without an answer to rate (e.g. a failure after partial work)."""
        self.model = model
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def failed(self) -> None:
        self.outcome = "error"

    def refused(self, quota: bool = False) -> None:
        self.outcome = "quota" if quota else "refused"


_current: ContextVar[UsageNote | None] = ContextVar("usage_note", default=None)


def current() -> UsageNote:
    note = _current.get()
    return note if note is not None else UsageNote()


@contextmanager
def tracking(note: UsageNote) -> Iterator[UsageNote]:
    token = _current.set(note)
    try:
        yield note
    finally:
        _current.reset(token)
