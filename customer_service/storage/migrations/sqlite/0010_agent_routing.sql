-- Schema v10 (SQLite): auto-assignment and agent status. An agent's capacity is how many
-- open conversations auto-assignment may give it (NULL: [routing] default_capacity);
-- status is what the agent set in the dashboard (online, away, offline), kept across
-- reloads and visible to every instance; last_assigned_at (ms, 0: never) is when
-- auto-assignment last gave it a conversation (round-robin takes turns by it). The
-- (assigned_to, status) index counts each agent's open conversations.
ALTER TABLE agents ADD COLUMN capacity INTEGER NULL CHECK (capacity IS NULL OR capacity BETWEEN 1 AND 1000);

ALTER TABLE agents ADD COLUMN status TEXT NOT NULL DEFAULT 'online' CHECK (status IN ('online', 'away', 'offline'));

ALTER TABLE agents ADD COLUMN last_assigned_at INTEGER NOT NULL DEFAULT 0;

CREATE INDEX conversations_assignee ON conversations (assigned_to, status);
