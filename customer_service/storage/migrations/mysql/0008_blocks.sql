-- Schema v8 (MySQL/MariaDB): blocked visitors and networks. A block names a visitor, a
-- network (normalized CIDR text, one address as /32 or /128), or both; expires_at NULL =
-- forever. Expired rows stay (the history) until removed; servers load the active ones.
-- Every statement is safe to run again (the rule: storage/_sql_schema.py).
CREATE TABLE IF NOT EXISTS blocks (
    id         BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    visitor_id BIGINT        NULL,
    network    VARCHAR(64)   NULL,
    reason     VARCHAR(2000) NOT NULL DEFAULT '',
    created_by VARCHAR(255)  NOT NULL DEFAULT '',
    created_at BIGINT        NOT NULL,
    expires_at BIGINT        NULL,
    KEY blocks_expires (expires_at),
    KEY blocks_visitor (visitor_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
