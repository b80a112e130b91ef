-- Schema v2 (MySQL/MariaDB): a conversation can be flagged for agents'
-- attention (the AI could not answer); assigning it clears the flag.
-- Plain ADD COLUMN: MySQL 8 has no ADD COLUMN IF NOT EXISTS (MariaDB has). The
-- runner skips it when the column exists already, so a run that died before the
-- version row was written can run again (the rule: storage/_sql_schema.py).
ALTER TABLE conversations ADD COLUMN needs_agent TINYINT NOT NULL DEFAULT 0;
