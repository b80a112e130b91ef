-- Schema v6 (MySQL/MariaDB): canned replies, team-wide snippets agents insert by shortcut.
-- The shortcut is stored in lower case (core/canned.py checks it) and is unique, every
-- character compared (NO PAD, as in SQLite). Safe to run again: CREATE TABLE IF NOT EXISTS
-- (the rule: storage/_sql_schema.py).
CREATE TABLE IF NOT EXISTS canned_replies (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    shortcut   VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    text       TEXT        NOT NULL,
    created_at BIGINT      NOT NULL,
    UNIQUE KEY canned_replies_shortcut (shortcut)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
