-- Encrypted events the bot could not decrypt yet (ciphertext only), kept across restarts so
-- they are answered when their room key arrives.
CREATE TABLE awaiting_keys (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL
);
