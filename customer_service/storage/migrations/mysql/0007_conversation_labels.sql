-- Schema v7 (MySQL/MariaDB): conversation labels (billing, vip...), set by agents and
-- admins. A label is stored in its one spelling (core/labels.py: normalized, case-folded,
-- 1-32 characters) and compared exactly (NO PAD binary, as SQLite does). The
-- (label, conversation_id) index answers "conversations labelled L".
-- Safe to run again (the rule: storage/_sql_schema.py): CREATE TABLE IF NOT EXISTS with
-- its indexes and foreign key inside (a new table: the conversations table is not copied).
CREATE TABLE IF NOT EXISTS conversation_labels (
    conversation_id BIGINT      NOT NULL,
    label           VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    created_at      BIGINT      NOT NULL,
    PRIMARY KEY (conversation_id, label),
    KEY conversation_labels_label (label, conversation_id),
    CONSTRAINT conversation_labels_conversation_fk FOREIGN KEY (conversation_id)
        REFERENCES conversations (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
