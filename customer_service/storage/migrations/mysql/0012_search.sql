-- Schema v12 (MySQL/MariaDB): full-text search over messages and visitors (core/search.py,
-- storage/_sql_search.py). MariaDB has no ngram parser and InnoDB's default parser
-- neither splits Chinese nor indexes words under 3 characters or stopwords, so the
-- FULLTEXT indexes are on columns of tokens the application writes (core/search.py
-- index_tokens), in tables of their own: adding a FULLTEXT index to messages itself
-- would rebuild that table (blocking writes) to add InnoDB's FTS_DOC_ID column.
-- A message's row is written in the transaction that stores the message; the rows of
-- what was stored before this migration are written by the store after migrating, in
-- batches, from the position search_backfill keeps (storage/_sql_search.py backfill).
-- message_search_recent: the newest messages first, for a query of terms too short for the
-- index (a bounded scan) and for paging.
-- Re-runnable (storage/_sql_schema.py): CREATE TABLE IF NOT EXISTS with named keys,
-- INSERT IGNORE.
CREATE TABLE IF NOT EXISTS message_search (
    conversation_id BIGINT     NOT NULL,
    seq             BIGINT     NOT NULL,
    created_at      BIGINT     NOT NULL,
    terms           MEDIUMTEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    KEY message_search_recent (created_at, conversation_id, seq),
    FULLTEXT KEY message_search_terms (terms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS visitor_search (
    visitor_id BIGINT NOT NULL PRIMARY KEY,
    terms      TEXT   NOT NULL,
    FULLTEXT KEY visitor_search_terms (terms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS search_backfill (
    name    VARCHAR(32) NOT NULL PRIMARY KEY,
    after_a BIGINT      NOT NULL,
    after_b BIGINT      NOT NULL,
    done    TINYINT(1)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT IGNORE INTO search_backfill (name, after_a, after_b, done)
    VALUES ('messages', 0, 0, 0), ('visitors', 0, 0, 0);
