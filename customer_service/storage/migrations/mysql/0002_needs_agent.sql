-- Schema v2 (MySQL/MariaDB): a conversation can be flagged for agents'
-- attention (the AI could not answer); assigning it clears the flag.
-- Plain ADD COLUMN: MySQL 8 has no ADD COLUMN IF NOT EXISTS (MariaDB has).
ALTER TABLE conversations ADD COLUMN needs_agent TINYINT NOT NULL DEFAULT 0;
