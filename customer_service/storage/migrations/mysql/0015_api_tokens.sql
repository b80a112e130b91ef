-- Schema v15 (MySQL/MariaDB): API tokens for machines (docs/api.md). Each token acts as a
-- bot agent: an agents row with bot = 1, named like the token, that can never log in, is
-- never auto-assigned and sends the token's messages. Only the SHA-256 of a token is
-- stored; scope is read or write; a revoked token keeps its row (revoked_at) so its name
-- stays taken and listed.
-- Every statement is safe to run again (the rule: storage/_sql_schema.py).
ALTER TABLE agents ADD COLUMN bot TINYINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS api_tokens (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name         VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    scope        VARCHAR(8)   NOT NULL,
    token_hash   CHAR(64)     NOT NULL,
    agent_id     BIGINT       NOT NULL,
    created_at   BIGINT       NOT NULL,
    last_used_at BIGINT       NULL,
    revoked_at   BIGINT       NULL,
    UNIQUE KEY api_tokens_name (name),
    UNIQUE KEY api_tokens_hash (token_hash),
    CONSTRAINT api_tokens_scope_check CHECK (scope IN ('read', 'write'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
