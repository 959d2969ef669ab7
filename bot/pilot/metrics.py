"""Prometheus counters of feedback and quotas, labelled by homeserver, never by user."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MAX_HOMESERVER_LABELS = 50
OTHER = "autre"
_seen: set[str] = set()


def homeserver_label(homeserver: str) -> str:
    """Label values stay bounded even if many servers show up: the 51st and later are "autre"."""
    if homeserver in _seen:
        return homeserver
    if len(_seen) >= MAX_HOMESERVER_LABELS:
        return OTHER
    _seen.add(homeserver)
    return homeserver


FEEDBACK = Counter(
    "tchapbot_feedback_total",
    "👍/👎 reactions recorded on answers, by homeserver, rating and kind of answer",
    ["homeserver", "rating", "kind"],
)
FEEDBACK_REMOVED = Counter(
    "tchapbot_feedback_removed_total", "Reactions un-recorded (redacted)", ["homeserver"]
)
COMMENTS = Counter("tchapbot_feedback_comments_total", "!avis comments", ["homeserver"])
QUOTA_REFUSALS = Counter(
    "tchapbot_quota_refusals_total",
    "Requests refused by a daily quota, by homeserver and quota (tokens, questions)",
    ["homeserver", "quota"],
)
QUOTA_TOKENS_TODAY = Gauge(
    "tchapbot_quota_tokens_today",
    "Tokens used today (Paris time) by the homeserver's people",
    ["homeserver"],
)
QUOTA_TOKEN_BUDGET = Gauge(
    "tchapbot_quota_token_budget", "Daily token budget per homeserver (0: no budget)"
)
