-- name: bootstrap
CREATE SCHEMA IF NOT EXISTS harvest_sync;
CREATE TABLE IF NOT EXISTS harvest_sync.schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied
SELECT version, checksum FROM harvest_sync.schema_migrations;

-- name: record
INSERT INTO harvest_sync.schema_migrations (version, checksum) VALUES (%(version)s, %(checksum)s);

-- Concurrent migrators wait for each other.
-- name: lock
SELECT pg_advisory_lock(hashtextextended('harvest_sync:migrations', 0));

-- name: unlock
SELECT pg_advisory_unlock(hashtextextended('harvest_sync:migrations', 0));
