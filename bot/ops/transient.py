"""Which failures are worth retrying: a busy SQLite database, an unreachable homeserver.

Anything else (a bug, a malformed event) is not retried: retrying would only repeat it.
"""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp


class TransientError(Exception):
    """A failure that should pass by itself (raised where a library answers with a value)."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientError):
        return True
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return "locked" in text or "busy" in text
    return isinstance(
        error, (aiohttp.ClientConnectionError, asyncio.TimeoutError, TimeoutError, ConnectionError)
    )
