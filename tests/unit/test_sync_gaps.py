"""When a limited sync timeline needs its gap fetched with /messages (bot/matrix/sync.py)."""

from __future__ import annotations

from bot.matrix.sync import FULL_STATE_GAP_MARGIN_MS, gap_possible

SAVED = 1_800_000_000_000  # the previous sync's token was saved then (bot's clock, ms)


def test_incremental_syncs_trust_the_homeserver() -> None:
    assert not gap_possible(
        limited=False, full_state=False, token_saved_at_ms=SAVED, oldest_event_ms=1
    )
    assert gap_possible(limited=True, full_state=False, token_saved_at_ms=SAVED, oldest_event_ms=1)


def test_first_sync_skips_rooms_whose_timeline_reaches_before_the_previous_sync() -> None:
    well_before = SAVED - FULL_STATE_GAP_MARGIN_MS - 1
    assert not gap_possible(
        limited=True, full_state=True, token_saved_at_ms=SAVED, oldest_event_ms=well_before
    )


def test_first_sync_fetches_when_the_timeline_may_start_after_the_previous_sync() -> None:
    # Only new events in the timeline (a busy room while the bot was down), or events so
    # close to the previous sync that a homeserver clock behind ours could hide the order.
    for oldest in (SAVED + 60_000, SAVED, SAVED - FULL_STATE_GAP_MARGIN_MS):
        assert gap_possible(
            limited=True, full_state=True, token_saved_at_ms=SAVED, oldest_event_ms=oldest
        )


def test_first_sync_fetches_without_what_it_needs_to_know() -> None:
    # A token saved by an older version (no time), an empty timeline, an event without a time.
    assert gap_possible(limited=True, full_state=True, token_saved_at_ms=None, oldest_event_ms=1)
    assert gap_possible(
        limited=True, full_state=True, token_saved_at_ms=SAVED, oldest_event_ms=None
    )
    assert gap_possible(limited=True, full_state=True, token_saved_at_ms=SAVED, oldest_event_ms=0)
