-- Pilot evaluation (issue 19; its SQL is in bot/store/pilot.py). No message content and no
-- user ID in these tables: people are a keyed hash (HMAC-SHA256 with TCHAP_BOT_PILOT_SECRET),
-- rooms too except in bot_answers.

-- One row per question, summary, command or document handled: what the report counts.
CREATE TABLE usage_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    day TEXT NOT NULL,                      -- Europe/Paris date, YYYY-MM-DD
    kind TEXT NOT NULL CHECK (kind IN ('question', 'summary', 'document', 'custom', 'command')),
    outcome TEXT NOT NULL CHECK (outcome IN ('answered', 'error', 'refused', 'quota')),
    homeserver TEXT NOT NULL,               -- the asker's server: the ministry
    user_hash TEXT NOT NULL,
    room_hash TEXT NOT NULL,
    model TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER                     -- event received -> answer sent; NULL if unknown
);
CREATE INDEX usage_events_by_day ON usage_events (day);
CREATE INDEX usage_events_by_homeserver ON usage_events (homeserver, day);
CREATE INDEX usage_events_by_user ON usage_events (user_hash, day);
CREATE INDEX usage_events_by_room ON usage_events (room_hash, day);

-- The bot's own events that are answers, so a reaction can be tied to a kind and a model.
CREATE TABLE bot_answers (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    thread_root_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('question', 'summary', 'document', 'custom')),
    model TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    dislike_acknowledged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX bot_answers_by_room ON bot_answers (room_id);

-- 👍 / 👎 on an answer; deleted when the reaction is redacted.
CREATE TABLE feedback (
    reaction_event_id TEXT PRIMARY KEY,
    answer_event_id TEXT NOT NULL,
    room_hash TEXT NOT NULL,
    user_hash TEXT NOT NULL,
    homeserver TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    UNIQUE (answer_event_id, user_hash, rating)
);
CREATE INDEX feedback_by_day ON feedback (day);

-- `!avis TEXTE`: comments written for the pilot team.
CREATE TABLE feedback_comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    day TEXT NOT NULL,
    room_hash TEXT NOT NULL,
    user_hash TEXT NOT NULL,
    homeserver TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX feedback_comments_by_day ON feedback_comments (day);
