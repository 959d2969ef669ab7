"""Questions taken back while in flight: redacted, `!oublie` / `!oublie-moi`, their room left.

A running one is cancelled, a queued one does not start, and what was already sent for them
is redacted when asked. The router keeps the table of triggers in flight; this keeps which of
them were withdrawn, until their job ends.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from bot.models import IncomingMessage, WithdrawScope
from bot.store import Store
from bot.workers import RoomWorkers

log = structlog.get_logger(__name__)


class Withdrawals:
    """`in_flight` is the router's own table of claimed, unfinished triggers, by event ID."""

    def __init__(
        self, store: Store, workers: RoomWorkers, in_flight: dict[str, IncomingMessage]
    ) -> None:
        self._store = store
        self._workers = workers
        self._in_flight = in_flight
        self._withdrawn: dict[str, bool] = {}  # in flight but taken back: redact what was sent?

    def withdraw(self, matches: Callable[[IncomingMessage], bool], *, redact: bool) -> list[str]:
        """Take back the triggers in flight that `matches`: a running one is cancelled, a
        queued one will not start (it checks at its start), and what was already sent for
        them is redacted when `redact`. Synchronous: the marks are set before any await."""
        chosen = [event_id for event_id, message in self._in_flight.items() if matches(message)]
        for event_id in chosen:
            self._withdrawn[event_id] = redact or self._withdrawn.get(event_id, False)
            self._workers.cancel(event_id)
        return chosen

    async def withdraw_questions_of(self, command: IncomingMessage, scope: WithdrawScope) -> None:
        """`!oublie` / `!oublie-moi`: the asker's questions sent before it are taken back now,
        not after they are answered."""
        chosen = self.withdraw(
            lambda m: (
                m.sender == command.sender
                and m.event_id != command.event_id
                and (scope is WithdrawScope.EVERYWHERE or m.room_id == command.room_id)
            ),
            redact=True,
        )
        if chosen:
            await self._store.triggers.withdraw(chosen)
            log.info(
                "router.questions_withdrawn",
                room_id=command.room_id,
                event_id=command.event_id,
                count=len(chosen),
            )

    async def still_wanted(self, message: IncomingMessage, *, reread: bool = True) -> bool:
        """Checked when a job starts: a question withdrawn while it waited in the room's queue
        (redacted, forgotten, its room left; by another process too, `tchap-bot purge-user`)
        never reaches the model. Without `reread` (the job did not wait), only this process's
        own withdrawals are checked."""
        if message.event_id in self._withdrawn:
            return False
        if not reread:
            return True
        status = await self._store.triggers.status(message.event_id)
        if status != "pending":
            log.info("router.withdrawn_before_start", status=status)
            return False
        return True

    def finished(self, event_id: str) -> bool:
        """A trigger's job has ended: forget its withdrawal. True when what it sent must be
        redacted."""
        return self._withdrawn.pop(event_id, False)
