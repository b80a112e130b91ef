-- Schema v7 (SQLite): conversation labels (billing, vip...), set by agents and admins.
-- A label is stored in its one spelling (core/labels.py: normalized, case-folded, 1-32
-- characters). The (label, conversation_id) index answers "conversations labelled L".
CREATE TABLE conversation_labels (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    label           TEXT    NOT NULL CHECK (length(label) BETWEEN 1 AND 32),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, label)
) WITHOUT ROWID;

CREATE INDEX conversation_labels_label ON conversation_labels (label, conversation_id);
