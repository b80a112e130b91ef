-- Schema v10 (MySQL/MariaDB): auto-assignment and agent status. An agent's capacity is how
-- many open conversations auto-assignment may give it (NULL: [routing] default_capacity);
-- status is what the agent set in the dashboard (online, away, offline), kept across
-- reloads and visible to every instance; last_assigned_at (ms, 0: never) is when
-- auto-assignment last gave it a conversation (round-robin takes turns by it). The
-- (assigned_to, status) index counts each agent's open conversations.
-- Every statement is safe to run again (the rule: storage/_sql_schema.py): one column,
-- constraint or index per statement, each named, each skipped once it is there.
ALTER TABLE agents ADD COLUMN capacity INT NULL;

ALTER TABLE agents ADD CONSTRAINT agents_capacity_check
    CHECK (capacity IS NULL OR capacity BETWEEN 1 AND 1000);

ALTER TABLE agents ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'online';

ALTER TABLE agents ADD CONSTRAINT agents_status_check
    CHECK (status IN ('online', 'away', 'offline'));

ALTER TABLE agents ADD COLUMN last_assigned_at BIGINT NOT NULL DEFAULT 0;

CREATE INDEX conversations_assignee ON conversations (assigned_to, status);
