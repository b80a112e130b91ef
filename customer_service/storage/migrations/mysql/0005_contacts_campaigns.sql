-- Schema v5 (MySQL/MariaDB): contacts (known customers, by the site's own user id), their
-- tags, the link from visitors and conversations to a contact, and campaigns with one
-- row per recipient. messages.campaign_id says which campaign sent a message.
-- Every statement is safe to run again (the rule: storage/_sql_schema.py): CREATE TABLE
-- IF NOT EXISTS, and ALTERs whose every clause the runner checks (named indexes).
-- external_id and tags compare every character (NO PAD, as SQLite and usernames do).
-- No foreign keys on the old tables (adding one copies the table): delete_contact
-- unlinks visitors and conversations itself. The new columns are added last (instant).
CREATE TABLE IF NOT EXISTS contacts (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    external_id      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    name             VARCHAR(255) NOT NULL DEFAULT '',
    email            VARCHAR(320) NOT NULL DEFAULT '',
    phone            VARCHAR(255) NOT NULL DEFAULT '',
    attributes       MEDIUMTEXT   NOT NULL,
    unsubscribed     TINYINT(1)   NOT NULL DEFAULT 0,
    last_campaign_at BIGINT       NULL,
    created_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    UNIQUE KEY contacts_external_id (external_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS contact_tags (
    contact_id BIGINT       NOT NULL,
    tag        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    PRIMARY KEY (contact_id, tag),
    KEY contact_tags_tag (tag, contact_id),
    CONSTRAINT contact_tags_contact_fk FOREIGN KEY (contact_id) REFERENCES contacts (id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE visitors ADD COLUMN contact_id BIGINT NULL, ADD KEY visitors_contact (contact_id);

ALTER TABLE conversations ADD COLUMN contact_id BIGINT NULL,
    ADD KEY conversations_contact (contact_id, id);

ALTER TABLE messages ADD COLUMN campaign_id BIGINT NULL;

CREATE TABLE IF NOT EXISTS campaigns (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name             VARCHAR(255) NOT NULL,
    status           VARCHAR(16)  NOT NULL,
    kind             VARCHAR(16)  NOT NULL,
    body             MEDIUMTEXT   NOT NULL,
    sender_role      VARCHAR(16)  NOT NULL,
    sender_id        BIGINT       NULL,
    sender_name      VARCHAR(255) NOT NULL,
    audience         MEDIUMTEXT   NOT NULL,
    concurrency      INT          NOT NULL,
    rate             DOUBLE       NOT NULL,
    scheduled_at     BIGINT       NULL,
    fallback         MEDIUMTEXT   NULL,
    max_tokens_total BIGINT       NULL,
    tokens_used      BIGINT       NOT NULL DEFAULT 0,
    stop_reason      TEXT         NOT NULL,
    lease_owner      VARCHAR(255) NULL,
    lease_until      BIGINT       NULL,
    created_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    started_at       BIGINT       NULL,
    finished_at      BIGINT       NULL,
    KEY campaigns_due (status, scheduled_at),
    CONSTRAINT campaigns_status_check CHECK (status IN ('ready', 'scheduled', 'running',
                                                       'paused', 'cancelled', 'finished')),
    CONSTRAINT campaigns_kind_check CHECK (kind IN ('template', 'prompt')),
    CONSTRAINT campaigns_role_check CHECK (sender_role IN ('agent', 'ai'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS campaign_recipients (
    campaign_id     BIGINT      NOT NULL,
    contact_id      BIGINT      NOT NULL,
    state           VARCHAR(16) NOT NULL,
    attempts        INT         NOT NULL DEFAULT 0,
    error           TEXT        NOT NULL,
    text            MEDIUMTEXT  NULL,
    tokens          BIGINT      NOT NULL DEFAULT 0,
    conversation_id BIGINT      NULL,
    message_seq     BIGINT      NULL,
    updated_at      BIGINT      NOT NULL,
    PRIMARY KEY (campaign_id, contact_id),
    KEY campaign_recipients_state (campaign_id, state, contact_id),
    KEY campaign_recipients_contact (contact_id),
    CONSTRAINT campaign_recipients_campaign_fk FOREIGN KEY (campaign_id)
        REFERENCES campaigns (id) ON DELETE CASCADE,
    CONSTRAINT campaign_recipients_contact_fk FOREIGN KEY (contact_id)
        REFERENCES contacts (id) ON DELETE CASCADE,
    CONSTRAINT campaign_recipients_state_check CHECK (state IN ('pending', 'generating', 'sent',
                                                                'failed', 'skipped'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
