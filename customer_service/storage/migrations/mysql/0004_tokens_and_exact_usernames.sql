-- Schema v4 (MySQL/MariaDB): when each agent token was last used (written at most once a
-- minute per token), listed by 'agents tokens'; and usernames compared exactly.
-- utf8mb4_bin pads with spaces ('alice ' = 'alice'), so a username with trailing
-- spaces logged in as the user without them; the NO PAD collation compares every
-- character, as SQLite does (MySQL 8 gets utf8mb4_0900_bin: see _sql_schema.for_server).
-- Both statements are safe to run again.
ALTER TABLE agent_tokens ADD COLUMN last_used_at BIGINT NULL;
ALTER TABLE agents MODIFY username VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL;
