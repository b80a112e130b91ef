-- Schema v1 (SQLite). Applied in one transaction together with its
-- schema_migrations row. Timestamps are INTEGER milliseconds since the Unix
-- epoch, UTC.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
);

CREATE TABLE agents (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL
);

CREATE TABLE agent_tokens (
    token_hash TEXT    PRIMARY KEY,
    agent_id   INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    label      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);

CREATE INDEX agent_tokens_agent ON agent_tokens (agent_id);

CREATE TABLE visitors (
    id         INTEGER PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    page       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE conversations (
    id               INTEGER PRIMARY KEY,
    visitor_id       INTEGER NOT NULL REFERENCES visitors (id),
    status           TEXT    NOT NULL CHECK (status IN ('open', 'assigned', 'closed')),
    assigned_to      INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    agent_read_seq   INTEGER NOT NULL DEFAULT 0,
    visitor_read_seq INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE INDEX conversations_updated ON conversations (updated_at, id);

CREATE INDEX conversations_status_updated ON conversations (status, updated_at, id);

CREATE INDEX conversations_visitor ON conversations (visitor_id, id);

-- dedupe_key is the SHA-256 (hex) of sender_role, sender_id and client_id when
-- client_id is set, else NULL; NULLs never collide in a UNIQUE index.
CREATE TABLE messages (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    sender_role     TEXT    NOT NULL CHECK (sender_role IN ('visitor', 'agent', 'ai', 'system')),
    sender_id       INTEGER,
    sender_name     TEXT    NOT NULL,
    content         TEXT    NOT NULL,
    client_id       TEXT,
    stream_id       TEXT,
    dedupe_key      TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE UNIQUE INDEX messages_dedupe ON messages (dedupe_key);
