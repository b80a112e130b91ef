-- Schema v4 (SQLite): when each agent token was last used (written at most once a minute
-- per token), listed by 'agents tokens'. (SQLite already compares usernames exactly; the
-- MySQL migration of the same number makes MariaDB do so too.)
ALTER TABLE agent_tokens ADD COLUMN last_used_at INTEGER NULL;
