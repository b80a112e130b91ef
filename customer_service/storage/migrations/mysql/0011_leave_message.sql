-- Schema v11 (MySQL/MariaDB): leave-a-message. The email address a visitor left on a
-- conversation when nobody could answer, for agents to write back to ('' when none was
-- left; 254 characters is the longest address). The once-per-conversation auto-replies need
-- no schema: their client ids (auto:welcome:<id>) meet the messages' unique dedupe key.
-- Plain ADD COLUMN: the runner skips it when the column exists already, so a run that died
-- before the version row was written can run again (the rule: storage/_sql_schema.py).
ALTER TABLE conversations ADD COLUMN left_email VARCHAR(254) NOT NULL DEFAULT '';
