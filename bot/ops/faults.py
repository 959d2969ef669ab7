"""Fault injection for crash-recovery tests (TEST ONLY; inert unless its variable is set).

`TCHAP_BOT_FAULT_POINT=<point>` makes the process SIGKILL itself the first time it reaches
`maybe_crash(<point>)`: no clean-up, no flush, exactly like a power cut or an OOM kill. The
tests restart the bot without the variable and check that every question was answered exactly
once. Points: `after_llm` (answer received, nothing sent), `after_send_before_record` (reply
sent, outcome not yet recorded), `mid_sync` (events handed to the router, sync token not yet
saved). Never set it in production.
"""

from __future__ import annotations

import os
import signal

FAULT_POINT_ENV = "TCHAP_BOT_FAULT_POINT"
POINTS = ("after_llm", "after_send_before_record", "mid_sync")


def maybe_crash(point: str) -> None:
    """Kill this process with SIGKILL if the test asked for a crash at `point`."""
    if os.environ.get(FAULT_POINT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
