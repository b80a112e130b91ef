-- Schema v16 (MySQL/MariaDB): reports (core/reports.py, storage/_sql_reports.py,
-- docs/reports.md). closed_at (ms) is when an agent last closed the conversation, NULL while
-- it is not closed (a visitor writing reopens it and clears it; a campaign's new
-- conversation, stored closed, was never closed by anyone). Conversations closed before
-- this migration get the time of their last "… closed the conversation" system line. The
-- indexes serve the reports' range scans (conversations opened or closed in a range,
-- messages written in a range) and the per-conversation look-ups by role (a conversation's
-- first visitor message, the first agent or AI message after it).
-- Every statement is safe to run again (the rule: storage/_sql_schema.py): one column or
-- index per statement, each named, each skipped once it is there; the UPDATE gives the
-- same result twice.
ALTER TABLE conversations ADD COLUMN closed_at BIGINT NULL;

CREATE INDEX conversations_created ON conversations (created_at);

CREATE INDEX conversations_closed ON conversations (closed_at);

CREATE INDEX messages_role ON messages (conversation_id, sender_role, seq, created_at, campaign_id);

CREATE INDEX messages_created ON messages (created_at, sender_role, campaign_id, conversation_id);

UPDATE conversations SET closed_at = (
    SELECT MAX(m.created_at) FROM messages m
     WHERE m.conversation_id = conversations.id AND m.sender_role = 'system'
       AND m.content LIKE '% closed the conversation')
 WHERE status = 'closed' AND closed_at IS NULL;
