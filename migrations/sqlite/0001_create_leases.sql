CREATE TABLE IF NOT EXISTS lethe_leases (
    name        VARCHAR(255) NOT NULL PRIMARY KEY,
    holder      VARCHAR(64)  NOT NULL,
    acquired_ms BIGINT       NOT NULL,
    expires_ms  BIGINT       NOT NULL
)
