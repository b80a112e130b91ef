-- Schema v9 (MySQL/MariaDB): private notes, agents' notes in a conversation. A table of
-- their own, never joined into messages: nothing that reads messages (the visitor's socket,
-- replay, the AI's context) can return a note. after_seq is the conversation's last_seq
-- when the note was written (its place in the agents' timeline); (agent_id, client_id)
-- makes a resend idempotent (client ids compare exactly: NO PAD).
-- Re-runnable (storage/_sql_schema.py): one CREATE TABLE IF NOT EXISTS, named keys.
CREATE TABLE IF NOT EXISTS notes (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    conversation_id BIGINT       NOT NULL,
    agent_id        BIGINT       NOT NULL,
    agent_name      VARCHAR(255) NOT NULL,
    content         MEDIUMTEXT   NOT NULL,
    after_seq       BIGINT       NOT NULL,
    client_id       VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL,
    created_at      BIGINT       NOT NULL,
    KEY notes_conversation (conversation_id, id),
    UNIQUE KEY notes_client (agent_id, client_id),
    CONSTRAINT notes_conversation_fk FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    CONSTRAINT notes_agent_fk FOREIGN KEY (agent_id) REFERENCES agents (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
