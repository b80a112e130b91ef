-- Schema v9 (SQLite): private notes, agents' notes in a conversation. A table of their own,
-- never joined into messages: nothing that reads messages (the visitor's socket, replay,
-- the AI's context) can return a note. after_seq is the conversation's last_seq when the
-- note was written (its place in the agents' timeline); (agent_id, client_id) makes a
-- resend idempotent.
CREATE TABLE notes (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    agent_id        INTEGER NOT NULL REFERENCES agents (id),
    agent_name      TEXT    NOT NULL,
    content         TEXT    NOT NULL,
    after_seq       INTEGER NOT NULL,
    client_id       TEXT    NULL,
    created_at      INTEGER NOT NULL
);

CREATE INDEX notes_conversation ON notes (conversation_id, id);

CREATE UNIQUE INDEX notes_client ON notes (agent_id, client_id);
