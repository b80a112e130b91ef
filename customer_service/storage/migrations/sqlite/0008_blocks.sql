-- Schema v8 (SQLite): blocked visitors and networks. A block names a visitor, a network
-- (normalized CIDR text, one address as /32 or /128), or both; expires_at NULL = forever.
-- Expired rows stay (the history) until removed; servers load the active ones.
CREATE TABLE blocks (
    id         INTEGER PRIMARY KEY,
    visitor_id INTEGER NULL,
    network    TEXT    NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    created_by TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NULL,
    CHECK (visitor_id IS NOT NULL OR network IS NOT NULL)
);

CREATE INDEX blocks_expires ON blocks (expires_at);

CREATE INDEX blocks_visitor ON blocks (visitor_id);
