-- Schema v14 (MySQL/MariaDB): webhooks (docs/webhooks.md). The subscriptions; the outbox,
-- one row per event and webhook, written in the same transaction as the change it reports
-- and sent by the server's sender (claimed with a lease, so one instance sends each); and
-- the attempts, the last 20 per delivery. ``body`` holds the exact bytes sent (and signed).
-- Re-runnable (storage/_sql_schema.py): CREATE TABLE IF NOT EXISTS, keys and foreign keys
-- named inside (new tables: nothing existing is copied).
CREATE TABLE IF NOT EXISTS webhooks (
    id         BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    url        VARCHAR(2048) NOT NULL,
    events     VARCHAR(512)  NOT NULL,
    secret     VARCHAR(256)  NOT NULL,
    created_at BIGINT        NOT NULL,
    disabled   TINYINT       NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    webhook_id      BIGINT       NOT NULL,
    event_id        VARCHAR(64)  NOT NULL,
    event_type      VARCHAR(64)  NOT NULL,
    conversation_id BIGINT       NULL,
    body            MEDIUMBLOB   NOT NULL,
    created_at      BIGINT       NOT NULL,
    queued_at       BIGINT       NOT NULL,
    state           VARCHAR(16)  NOT NULL DEFAULT 'pending',
    attempts        INT          NOT NULL DEFAULT 0,
    next_attempt_at BIGINT       NOT NULL,
    claimed_by      VARCHAR(128) NULL,
    claim_until     BIGINT       NULL,
    last_status     INT          NULL,
    last_error      VARCHAR(512) NOT NULL DEFAULT '',
    delivered_at    BIGINT       NULL,
    UNIQUE KEY webhook_deliveries_event (event_id, webhook_id),
    KEY webhook_deliveries_due (state, next_attempt_at),
    KEY webhook_deliveries_order (webhook_id, conversation_id, state, id),
    CONSTRAINT webhook_deliveries_webhook_fk FOREIGN KEY (webhook_id)
        REFERENCES webhooks (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS webhook_attempts (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    delivery_id BIGINT       NOT NULL,
    at          BIGINT       NOT NULL,
    status      INT          NULL,
    error       VARCHAR(512) NOT NULL DEFAULT '',
    duration_ms INT          NOT NULL,
    KEY webhook_attempts_delivery (delivery_id, id),
    CONSTRAINT webhook_attempts_delivery_fk FOREIGN KEY (delivery_id)
        REFERENCES webhook_deliveries (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
