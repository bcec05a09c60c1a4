-- Harvest OAuth2 tokens as refreshed by the sync, one row per Airflow connection.
-- Tasks cannot write Airflow connections (Airflow 3 task code has no metadata-DB access), so the
-- refreshed access token and any rotated refresh token live here, Fernet-encrypted with Airflow's
-- [core] fernet_key. The connection keeps what the administrator installed (client id, secret,
-- first refresh token, account id); seed_sha256 says which installation a row continues: when the
-- connection's refresh token changes (installed again), the row starts over from it.
CREATE SCHEMA IF NOT EXISTS harvest_sync;

CREATE TABLE IF NOT EXISTS harvest_sync.oauth_tokens (
    conn_id            text PRIMARY KEY,
    seed_sha256        text        NOT NULL,  -- sha256 of the connection's refresh token
    access_token       text,                  -- Fernet token (base64 text), never plain
    refresh_token      text        NOT NULL,  -- Fernet token (base64 text), never plain
    expires_at         timestamptz,           -- of the access token, from Harvest's expires_in
    lifetime_seconds   float8,                -- that expires_in: refresh a tenth of it (at most 2 min) early
    refreshed_at       timestamptz,
    refresh_count      bigint      NOT NULL DEFAULT 0,
    rotations          bigint      NOT NULL DEFAULT 0  -- refreshes that brought a new refresh token
);
