-- Documents shared in rooms (issue 14): one row per file event, its passages, their full-text
-- index (FTS5, BM25) and, when the endpoint has embeddings, one vector per passage.
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    name TEXT NOT NULL,
    mimetype TEXT,
    size INTEGER,
    format TEXT,
    pages INTEGER,
    status TEXT NOT NULL DEFAULT 'pending',  -- pending | indexed | failed
    error TEXT,                               -- DocumentErrorReason when failed
    ocr_pages INTEGER NOT NULL DEFAULT 0,
    passages INTEGER NOT NULL DEFAULT 0,
    chars INTEGER NOT NULL DEFAULT 0,
    embedded INTEGER NOT NULL DEFAULT 0,
    thread_root_id TEXT,
    timestamp_ms INTEGER NOT NULL,
    indexed_at_ms INTEGER,
    source TEXT  -- the attachment (JSON) while pending, to resume after a restart; then NULL
);
CREATE INDEX documents_room ON documents (room_id, timestamp_ms);
CREATE INDEX documents_sender ON documents (sender);

CREATE TABLE document_passages (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    room_token TEXT NOT NULL,  -- a word naming the room inside the FTS index (room filter)
    position INTEGER NOT NULL,
    label TEXT NOT NULL,
    page INTEGER,
    text TEXT NOT NULL,
    embedding BLOB  -- float32 little-endian (sqlite-vec's layout); NULL without embeddings
);
CREATE INDEX document_passages_document ON document_passages (document_id, position);
CREATE INDEX document_passages_room ON document_passages (room_id);

CREATE VIRTUAL TABLE document_passages_fts USING fts5 (
    text,
    room_token,
    content = 'document_passages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER document_passages_ai AFTER INSERT ON document_passages BEGIN
    INSERT INTO document_passages_fts (rowid, text, room_token)
    VALUES (new.id, new.text, new.room_token);
END;
CREATE TRIGGER document_passages_ad AFTER DELETE ON document_passages BEGIN
    INSERT INTO document_passages_fts (document_passages_fts, rowid, text, room_token)
    VALUES ('delete', old.id, old.text, old.room_token);
END;
-- Per-term document counts of the index: very common words are left out of a question's query.
CREATE VIRTUAL TABLE document_passages_vocab USING fts5vocab (document_passages_fts, 'row');
