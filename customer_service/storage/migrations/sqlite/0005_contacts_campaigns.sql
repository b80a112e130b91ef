-- Schema v5 (SQLite): contacts (known customers, by the site's own user id), their
-- tags, the link from visitors and conversations to a contact, and campaigns with one
-- row per recipient. messages.campaign_id says which campaign sent a message.
-- Attributes and a campaign's audience are JSON objects stored as text.
CREATE TABLE contacts (
    id               INTEGER PRIMARY KEY,
    external_id      TEXT    NOT NULL UNIQUE,
    name             TEXT    NOT NULL DEFAULT '',
    email            TEXT    NOT NULL DEFAULT '',
    phone            TEXT    NOT NULL DEFAULT '',
    attributes       TEXT    NOT NULL DEFAULT '{}',
    unsubscribed     INTEGER NOT NULL DEFAULT 0 CHECK (unsubscribed IN (0, 1)),
    last_campaign_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE contact_tags (
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    tag        TEXT    NOT NULL,
    PRIMARY KEY (contact_id, tag)
) WITHOUT ROWID;

CREATE INDEX contact_tags_tag ON contact_tags (tag, contact_id);

-- No foreign keys on the old tables: delete_contact unlinks them itself.
ALTER TABLE visitors ADD COLUMN contact_id INTEGER NULL;

CREATE INDEX visitors_contact ON visitors (contact_id);

ALTER TABLE conversations ADD COLUMN contact_id INTEGER NULL;

CREATE INDEX conversations_contact ON conversations (contact_id, id);

ALTER TABLE messages ADD COLUMN campaign_id INTEGER NULL;

CREATE TABLE campaigns (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('ready', 'scheduled', 'running', 'paused',
                                                        'cancelled', 'finished')),
    kind             TEXT    NOT NULL CHECK (kind IN ('template', 'prompt')),
    body             TEXT    NOT NULL,
    sender_role      TEXT    NOT NULL CHECK (sender_role IN ('agent', 'ai')),
    sender_id        INTEGER,
    sender_name      TEXT    NOT NULL,
    audience         TEXT    NOT NULL DEFAULT '{}',
    concurrency      INTEGER NOT NULL,
    rate             REAL    NOT NULL,
    scheduled_at     INTEGER,
    fallback         TEXT,
    max_tokens_total INTEGER,
    tokens_used      INTEGER NOT NULL DEFAULT 0,
    stop_reason      TEXT    NOT NULL DEFAULT '',
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);

CREATE INDEX campaigns_due ON campaigns (status, scheduled_at);

CREATE TABLE campaign_recipients (
    campaign_id     INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id      INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'generating', 'sent', 'failed',
                                                      'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT    NOT NULL DEFAULT '',
    text            TEXT,
    tokens          INTEGER NOT NULL DEFAULT 0,
    conversation_id INTEGER,
    message_seq     INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, contact_id)
);

CREATE INDEX campaign_recipients_state ON campaign_recipients (campaign_id, state, contact_id);

CREATE INDEX campaign_recipients_contact ON campaign_recipients (contact_id);
