-- Schema v13 (SQLite): visitor context, what agents see beside a conversation about where
-- its visitor is (docs/agents.md). One row per conversation for the newest visit (the
-- socket's User-Agent and address, the widget's time zone and referrer, the current
-- page), and the pages seen, at most the last 50 per conversation (older ones are
-- deleted as new ones are written). URLs are stored without query or fragment.
CREATE TABLE visitor_context (
    conversation_id  INTEGER PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    user_agent       TEXT    NOT NULL DEFAULT '',
    ip               TEXT    NOT NULL DEFAULT '',
    timezone         TEXT    NOT NULL DEFAULT '',
    referrer         TEXT    NOT NULL DEFAULT '',
    page             TEXT    NOT NULL DEFAULT '',
    title            TEXT    NOT NULL DEFAULT '',
    visit_started_at INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE visitor_pages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    url             TEXT    NOT NULL,
    title           TEXT    NOT NULL DEFAULT '',
    seen_at         INTEGER NOT NULL
);

CREATE INDEX visitor_pages_conversation ON visitor_pages (conversation_id, id);
