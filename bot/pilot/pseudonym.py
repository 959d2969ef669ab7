"""Keyed hashes of people and rooms: stable for counting, useless without the secret."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime

from bot.french import PARIS

HASH_CHARS = 32  # 128 bits of HMAC-SHA256: no collision among a pilot's people


class Pseudonymizer:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _digest(self, domain: str, value: str) -> str:
        mac = hmac.new(self._key, f"{domain}\x00{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:HASH_CHARS]

    def user(self, user_id: str) -> str:
        return self._digest("user", user_id)

    def room(self, room_id: str) -> str:
        return self._digest("room", room_id)


def homeserver_of(user_id: str) -> str:
    """`@jean-x.fr:agent.dinum.tchap.gouv.fr` → `agent.dinum.tchap.gouv.fr`."""
    _, _, server = user_id.partition(":")
    return server.lower() or "inconnu"


def paris_day(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, PARIS).date().isoformat()


def paris_today(now_s: float) -> date:
    return datetime.fromtimestamp(now_s, PARIS).date()
