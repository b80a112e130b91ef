-- Schema v15 (SQLite): API tokens for machines (docs/api.md). Each token acts as a bot
-- agent: an agents row with bot = 1, named like the token, that can never log in, is never
-- auto-assigned and sends the token's messages. Only the SHA-256 of a token is stored;
-- scope is read or write; a revoked token keeps its row (revoked_at) so its name stays
-- taken and listed.
ALTER TABLE agents ADD COLUMN bot INTEGER NOT NULL DEFAULT 0 CHECK (bot IN (0, 1));

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    scope        TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    token_hash   TEXT    NOT NULL UNIQUE,
    agent_id     INTEGER NOT NULL REFERENCES agents (id),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NULL,
    revoked_at   INTEGER NULL
);
