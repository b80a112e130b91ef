-- Schema v2 (SQLite): a conversation can be flagged for agents' attention
-- (the AI could not answer); assigning it to an agent clears the flag.
ALTER TABLE conversations ADD COLUMN needs_agent INTEGER NOT NULL DEFAULT 0 CHECK (needs_agent IN (0, 1));
