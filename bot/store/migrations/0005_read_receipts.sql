-- Public read receipts (m.receipt, m.read) of room members, for `!resume` "since you last read".
-- One row per member and room (thread '' = the room; otherwise a thread root's event ID).
-- `earlier_*` is the last receipt of the member's previous reading session: Element sends a
-- receipt as soon as the room is opened, so the newest one often marks "read up to now".
CREATE TABLE read_receipts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    read_at_ms INTEGER NOT NULL,
    earlier_event_id TEXT,
    earlier_read_at_ms INTEGER,
    PRIMARY KEY (room_id, user_id, thread)
);
