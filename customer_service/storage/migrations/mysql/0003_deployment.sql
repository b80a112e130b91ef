-- Schema v3 (MySQL/MariaDB): a random token naming this deployment (this database), so
-- that instances sharing a Redis bus by mistake (two deployments, one namespace) ignore
-- each other instead of mixing conversations. Both statements are safe to run again.
CREATE TABLE IF NOT EXISTS deployment (
    id    TINYINT  NOT NULL PRIMARY KEY,
    token CHAR(32) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT IGNORE INTO deployment (id, token) VALUES (1, REPLACE(UUID(), '-', ''));
