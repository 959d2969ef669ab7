"""The router's limits on what calls the model: per-user and per-room rate limits, then the
daily quotas (`Pilot.quota_refusal`). A refused trigger is finished as skipped.
"""

from __future__ import annotations

from bot import texts
from bot.answer.replies import Outbox
from bot.models import IncomingMessage
from bot.ops import metrics
from bot.ops.ratelimit import Cooldown, SlidingWindowLimiter
from bot.pilot import usage
from bot.pilot.service import Pilot
from bot.store import Store
from config.settings import Settings

RATE_NOTICE_EVERY = 60.0


class ModelLimits:
    """Admits or refuses a question or command that calls the model."""

    def __init__(self, settings: Settings, store: Store, outbox: Outbox, pilot: Pilot) -> None:
        self._store = store
        self._outbox = outbox
        self._pilot = pilot
        self._rate_notices = Cooldown(RATE_NOTICE_EVERY)
        self._user_limiter = SlidingWindowLimiter(settings.user_rate_limit_per_minute)
        self._room_limiter = SlidingWindowLimiter(settings.room_rate_limit_per_minute)

    async def admit(self, message: IncomingMessage) -> bool:
        """False when `message` is refused; its trigger is then already finished."""
        return await self._within_rate_limits(message) and not await self._over_quota(message)

    async def _within_rate_limits(self, message: IncomingMessage) -> bool:
        """Questions and commands that call the model share the per-user and per-room limits."""
        if not self._user_limiter.allow(message.sender):
            await self._refuse_rate_limited(
                message, "user", message.sender, texts.USER_RATE_LIMITED
            )
            return False
        if not self._room_limiter.allow(message.room_id):
            await self._refuse_rate_limited(
                message, "room", message.room_id, texts.ROOM_RATE_LIMITED
            )
            return False
        return True

    async def _refuse_rate_limited(
        self, message: IncomingMessage, scope: str, key: str, notice: str
    ) -> None:
        """One polite notice per minute and per user (or room): a flood gets no flood back."""
        metrics.RATE_LIMITED.labels(scope).inc()
        usage.current().refused()
        notice_key = f"{scope}\x00{key}"
        if self._rate_notices.remaining(notice_key) == 0:
            self._rate_notices.start(notice_key)
            await self._outbox.reply(message, notice, purpose="ratelimit", notice=True)
        await self._store.triggers.finish(message, "skipped")

    async def _over_quota(self, message: IncomingMessage) -> bool:
        """A daily quota is reached: one polite notice per person and day, then silence."""
        refusal = await self._pilot.quota_refusal(message)
        if refusal is None:
            return False
        usage.current().refused(quota=True)
        if refusal.notice is not None:
            await self._outbox.reply(message, refusal.notice, purpose="quota", notice=True)
        await self._store.triggers.finish(message, "skipped")
        return True
