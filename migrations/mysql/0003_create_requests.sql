CREATE TABLE IF NOT EXISTS lethe_requests (
    id           VARCHAR(40)   NOT NULL PRIMARY KEY,
    kind         VARCHAR(16)   NOT NULL,
    state        VARCHAR(16)   NOT NULL,
    subject      VARCHAR(255),
    subject_hash CHAR(64)      NOT NULL,
    received_ms  BIGINT        NOT NULL,
    due_ms       BIGINT        NOT NULL,
    ticket_ref   VARCHAR(255),
    reason       VARCHAR(255),
    note         VARCHAR(1024),
    closed_ms    BIGINT,
    updated_ms   BIGINT        NOT NULL,
    intake_key   VARCHAR(255)  UNIQUE,
    outcome      MEDIUMTEXT
)
