-- Schema v14 (SQLite): webhooks (docs/webhooks.md). The subscriptions; the outbox, one row
-- per event and webhook, written in the same transaction as the change it reports and
-- sent by the server's sender (claimed with a lease, so one instance sends each); and the
-- attempts, the last 20 per delivery. ``body`` holds the exact bytes sent (and signed).
CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    disabled   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    conversation_id INTEGER,
    body            BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    queued_at       INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claim_until     INTEGER,
    last_status     INTEGER,
    last_error      TEXT    NOT NULL DEFAULT '',
    delivered_at    INTEGER,
    UNIQUE (event_id, webhook_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries
    (webhook_id, conversation_id, state, id);

CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT    NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL
);

CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
