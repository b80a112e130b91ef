-- Schema v1 (MySQL 8 / MariaDB 10.5+). DDL commits implicitly in MySQL, so a
-- migration is not atomic: every statement must be safe to run again (here:
-- IF NOT EXISTS, indexes inline) and the schema_migrations row comes last. The
-- runner skips plain ADD/DROP COLUMN, INDEX, CONSTRAINT... already applied; the
-- rule for writing MySQL migrations is in storage/_sql_schema.py.
-- Timestamps are BIGINT milliseconds since the Unix epoch, UTC. Text columns
-- use utf8mb4_bin so comparisons are exact and case-sensitive, as in SQLite.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INT    NOT NULL PRIMARY KEY,
    applied_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS agents (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username      VARCHAR(255) NOT NULL,
    name          VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    disabled      TINYINT(1)   NOT NULL DEFAULT 0,
    created_at    BIGINT       NOT NULL,
    UNIQUE KEY agents_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS agent_tokens (
    token_hash VARCHAR(128) NOT NULL PRIMARY KEY,
    agent_id   BIGINT       NOT NULL,
    label      VARCHAR(255) NOT NULL,
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NULL,
    KEY agent_tokens_agent (agent_id),
    CONSTRAINT agent_tokens_agent_fk FOREIGN KEY (agent_id) REFERENCES agents (id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS visitors (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token_hash VARCHAR(128) NOT NULL,
    name       VARCHAR(255) NOT NULL,
    email      VARCHAR(320) NOT NULL,
    page       TEXT         NOT NULL,
    created_at BIGINT       NOT NULL,
    UNIQUE KEY visitors_token (token_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS conversations (
    id               BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    visitor_id       BIGINT      NOT NULL,
    status           VARCHAR(16) NOT NULL,
    assigned_to      BIGINT      NULL,
    last_seq         BIGINT      NOT NULL DEFAULT 0,
    agent_read_seq   BIGINT      NOT NULL DEFAULT 0,
    visitor_read_seq BIGINT      NOT NULL DEFAULT 0,
    created_at       BIGINT      NOT NULL,
    updated_at       BIGINT      NOT NULL,
    KEY conversations_updated (updated_at, id),
    KEY conversations_status_updated (status, updated_at, id),
    KEY conversations_visitor (visitor_id, id),
    CONSTRAINT conversations_visitor_fk FOREIGN KEY (visitor_id) REFERENCES visitors (id),
    CONSTRAINT conversations_agent_fk FOREIGN KEY (assigned_to) REFERENCES agents (id)
        ON DELETE SET NULL,
    CONSTRAINT conversations_status_check CHECK (status IN ('open', 'assigned', 'closed'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- dedupe_key is the SHA-256 (hex) of sender_role, sender_id and client_id when
-- client_id is set, else NULL; NULLs never collide in a UNIQUE index.
CREATE TABLE IF NOT EXISTS messages (
    conversation_id BIGINT       NOT NULL,
    seq             BIGINT       NOT NULL,
    sender_role     VARCHAR(16)  NOT NULL,
    sender_id       BIGINT       NULL,
    sender_name     VARCHAR(255) NOT NULL,
    content         MEDIUMTEXT   NOT NULL,
    client_id       VARCHAR(255) NULL,
    stream_id       VARCHAR(255) NULL,
    dedupe_key      CHAR(64)     NULL,
    created_at      BIGINT       NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE KEY messages_dedupe (dedupe_key),
    CONSTRAINT messages_conversation_fk FOREIGN KEY (conversation_id)
        REFERENCES conversations (id),
    CONSTRAINT messages_role_check CHECK (sender_role IN ('visitor', 'agent', 'ai', 'system'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
