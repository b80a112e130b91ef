-- Schema v3 (SQLite): a random token naming this deployment (this database), so that
-- instances sharing a Redis bus by mistake (two deployments, one namespace) ignore each
-- other instead of mixing conversations.
CREATE TABLE IF NOT EXISTS deployment (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT    NOT NULL
);
INSERT OR IGNORE INTO deployment (id, token) VALUES (1, lower(hex(randomblob(16))));
