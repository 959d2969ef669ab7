-- Commands a room's moderators turned off.
CREATE TABLE disabled_commands (
    room_id TEXT NOT NULL,
    command TEXT NOT NULL,
    disabled_by TEXT NOT NULL,
    disabled_at_ms INTEGER NOT NULL,
    PRIMARY KEY (room_id, command)
);

-- Room-defined commands: a prompt template run by `!name text`.
CREATE TABLE custom_commands (
    room_id TEXT NOT NULL,
    name TEXT NOT NULL,
    template TEXT NOT NULL,
    description TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (room_id, name)
);

-- Commands posted in a room at set times (Europe/Paris).
CREATE TABLE schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    command_line TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    next_run_ms INTEGER NOT NULL,
    last_run_ms INTEGER
);
CREATE INDEX schedules_due ON schedules (next_run_ms);
