-- Schema v6 (SQLite): canned replies, team-wide snippets agents insert by shortcut.
-- The shortcut is stored in lower case (core/canned.py checks it) and is unique.
CREATE TABLE canned_replies (
    id         INTEGER PRIMARY KEY,
    shortcut   TEXT    NOT NULL UNIQUE,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
