-- Session of the bot's Matrix account: reused at every start so no new device is created.
CREATE TABLE session (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    access_token TEXT NOT NULL
);

-- Small key/value state: sync token, first start marker.
CREATE TABLE bot_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    is_direct INTEGER NOT NULL DEFAULT 0,
    joined_at INTEGER NOT NULL
);

-- Every text message the bot could see, for summaries and for replies' context.
CREATE TABLE room_messages (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    body TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    thread_root_id TEXT
);
CREATE INDEX room_messages_by_room_time ON room_messages (room_id, timestamp_ms);
CREATE INDEX room_messages_by_sender ON room_messages (sender);

-- The conversation the model remembers, per room (and per thread). Cleared by !oublie.
CREATE TABLE conversation_turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    thread_root_id TEXT,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    sender TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    content TEXT NOT NULL,
    event_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL
);
CREATE INDEX conversation_turns_by_room ON conversation_turns (room_id, thread_root_id, id);
CREATE INDEX conversation_turns_by_event ON conversation_turns (event_id);
CREATE INDEX conversation_turns_by_sender ON conversation_turns (sender);

-- Exactly-once bookkeeping: one row per event that asked the bot something.
CREATE TABLE triggers (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'answered', 'failed', 'skipped')),
    received_at_ms INTEGER NOT NULL,
    event_timestamp_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    answer_event_id TEXT,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX triggers_pending ON triggers (status, received_at_ms);

CREATE TABLE room_settings (
    room_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE settings_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    changed_at_ms INTEGER NOT NULL
);
CREATE INDEX settings_audit_by_room ON settings_audit (room_id, id);

CREATE TABLE room_usage (
    room_id TEXT PRIMARY KEY,
    questions INTEGER NOT NULL DEFAULT 0,
    answers INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    last_activity_ms INTEGER
);
