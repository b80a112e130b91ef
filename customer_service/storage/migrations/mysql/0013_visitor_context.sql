-- Schema v13 (MySQL/MariaDB): visitor context, what agents see beside a conversation about
-- where its visitor is (docs/agents.md). One row per conversation for the newest visit
-- (the socket's User-Agent and address, the widget's time zone and referrer, the current
-- page), and the pages seen, at most the last 50 per conversation (older ones are deleted
-- as new ones are written). URLs are stored without query or fragment.
-- Re-runnable (storage/_sql_schema.py): CREATE TABLE IF NOT EXISTS, keys and foreign keys
-- named inside (new tables: nothing existing is copied).
CREATE TABLE IF NOT EXISTS visitor_context (
    conversation_id  BIGINT        NOT NULL PRIMARY KEY,
    user_agent       VARCHAR(1024) NOT NULL DEFAULT '',
    ip               VARCHAR(64)   NOT NULL DEFAULT '',
    timezone         VARCHAR(64)   NOT NULL DEFAULT '',
    referrer         VARCHAR(2048) NOT NULL DEFAULT '',
    page             VARCHAR(2048) NOT NULL DEFAULT '',
    title            VARCHAR(512)  NOT NULL DEFAULT '',
    visit_started_at BIGINT        NOT NULL,
    updated_at       BIGINT        NOT NULL,
    CONSTRAINT visitor_context_conversation_fk FOREIGN KEY (conversation_id)
        REFERENCES conversations (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS visitor_pages (
    id              BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    conversation_id BIGINT        NOT NULL,
    url             VARCHAR(2048) NOT NULL,
    title           VARCHAR(512)  NOT NULL DEFAULT '',
    seen_at         BIGINT        NOT NULL,
    KEY visitor_pages_conversation (conversation_id, id),
    CONSTRAINT visitor_pages_conversation_fk FOREIGN KEY (conversation_id)
        REFERENCES conversations (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
