-- Schema v12 (SQLite): full-text search over messages and visitors (core/search.py,
-- storage/_sql_search.py). FTS5 tables with the trigram tokenizer, which finds any
-- substring of 3 or more characters in any script (Chinese included), case-insensitively.
-- External content: the index stores no second copy of the text; it reads it from
-- messages (by rowid, which SQLite keeps for a table's rows: messages are never
-- deleted, and VACUUM keeps rowids) and from visitors (by id).
-- Triggers keep the index in step with every write. The migrations runner splits
-- statements at a ';' that ends a line, so a trigger's inner statements end mid-line.
-- The 'rebuild' commands index what is stored already (one pass each, in the
-- migration's transaction).
CREATE VIRTUAL TABLE message_search USING fts5(
    content, content = 'messages', content_rowid = 'rowid', tokenize = 'trigram');

CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
    INSERT INTO message_search (rowid, content) VALUES (new.rowid, new.content); END;

CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
    INSERT INTO message_search (message_search, rowid, content)
        VALUES ('delete', old.rowid, old.content); END;

CREATE TRIGGER message_search_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO message_search (message_search, rowid, content)
        VALUES ('delete', old.rowid, old.content); INSERT INTO message_search (rowid, content)
        VALUES (new.rowid, new.content); END;

INSERT INTO message_search (message_search) VALUES ('rebuild');

CREATE VIRTUAL TABLE visitor_search USING fts5(
    name, email, content = 'visitors', content_rowid = 'id', tokenize = 'trigram');

CREATE TRIGGER visitor_search_insert AFTER INSERT ON visitors BEGIN
    INSERT INTO visitor_search (rowid, name, email) VALUES (new.id, new.name, new.email); END;

CREATE TRIGGER visitor_search_delete AFTER DELETE ON visitors BEGIN
    INSERT INTO visitor_search (visitor_search, rowid, name, email)
        VALUES ('delete', old.id, old.name, old.email); END;

CREATE TRIGGER visitor_search_update AFTER UPDATE OF name, email ON visitors BEGIN
    INSERT INTO visitor_search (visitor_search, rowid, name, email)
        VALUES ('delete', old.id, old.name, old.email); INSERT INTO visitor_search
        (rowid, name, email) VALUES (new.id, new.name, new.email); END;

INSERT INTO visitor_search (visitor_search) VALUES ('rebuild');
