CREATE TABLE IF NOT EXISTS lethe_runs (
    run_id      VARCHAR(64)  NOT NULL PRIMARY KEY,
    command     VARCHAR(16)  NOT NULL,
    started_ms  BIGINT       NOT NULL,
    ended_ms    BIGINT,
    status      VARCHAR(32)  NOT NULL,
    audit_file  VARCHAR(1024) NOT NULL,
    head_hash   CHAR(64),
    records     BIGINT
)
