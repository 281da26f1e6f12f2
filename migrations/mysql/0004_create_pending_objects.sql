CREATE TABLE IF NOT EXISTS lethe_pending_objects (
    store           VARCHAR(255)  NOT NULL,
    key_sha256      CHAR(64)      NOT NULL,
    object_key      VARCHAR(1024) NOT NULL,
    reason          VARCHAR(16)   NOT NULL,
    retain_until_ms BIGINT,
    added_ms        BIGINT        NOT NULL,
    checked_ms      BIGINT        NOT NULL,
    PRIMARY KEY (store, key_sha256)
)
