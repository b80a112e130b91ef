-- Schema v11 (SQLite): leave-a-message. The email address a visitor left on a conversation
-- when nobody could answer, for agents to write back to ('' when none was left). The
-- once-per-conversation auto-replies need no schema: their client ids (auto:welcome:<id>)
-- meet the messages' unique dedupe key.
ALTER TABLE conversations ADD COLUMN left_email TEXT NOT NULL DEFAULT '';
