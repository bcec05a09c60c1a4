-- Harvest OAuth2 token store (harvest_sync.oauth_tokens); values are Fernet-encrypted by the caller.

-- The current tokens of a connection, without a lock (the fast path of every hook).
-- name: current
SELECT seed_sha256, access_token, refresh_token,
       extract(epoch FROM expires_at - clock_timestamp())::float8 AS expires_in,  -- seconds left, DB clock
       lifetime_seconds
FROM harvest_sync.oauth_tokens
WHERE conn_id = %(conn_id)s;

-- First use of an installation: a row that starts from the connection's refresh token.
-- name: seed
INSERT INTO harvest_sync.oauth_tokens (conn_id, seed_sha256, refresh_token)
VALUES (%(conn_id)s, %(seed_sha256)s, %(refresh_token)s)
ON CONFLICT (conn_id) DO NOTHING;

-- The row lock every refresh holds until it has stored Harvest's answer: a second process that wants
-- to refresh at the same time waits here, then sees (and uses) the token the first one stored.
-- name: lock
SELECT seed_sha256, access_token, refresh_token,
       extract(epoch FROM expires_at - clock_timestamp())::float8 AS expires_in,  -- seconds left, DB clock
       lifetime_seconds
FROM harvest_sync.oauth_tokens
WHERE conn_id = %(conn_id)s
FOR UPDATE;

-- The connection was installed again (a new refresh token): forget the old chain.
-- name: reseed
UPDATE harvest_sync.oauth_tokens
SET seed_sha256 = %(seed_sha256)s, refresh_token = %(refresh_token)s, access_token = NULL, expires_at = NULL,
    lifetime_seconds = NULL
WHERE conn_id = %(conn_id)s;

-- name: store
UPDATE harvest_sync.oauth_tokens
SET access_token = %(access_token)s,
    refresh_token = %(refresh_token)s,
    expires_at = clock_timestamp() + make_interval(secs => %(expires_in)s),
    lifetime_seconds = %(expires_in)s,
    refreshed_at = clock_timestamp(),
    refresh_count = refresh_count + 1,
    rotations = rotations + %(rotated)s::int
WHERE conn_id = %(conn_id)s;

-- The row that continues an installation, whichever connection id first used it: the connection test runs
-- under a throwaway id and must renew (or reuse) the installation's tokens, never start a second chain.
-- name: by_seed
SELECT conn_id
FROM harvest_sync.oauth_tokens
WHERE seed_sha256 = %(seed_sha256)s
ORDER BY refreshed_at DESC NULLS LAST
LIMIT 1;

-- The install page's OAuth2 states are single-use: the first callback with a state claims it (a replayed
-- callback finds it claimed). States older than a day can no longer come back (the pending install cookie
-- expires after 15 minutes): they go.
-- name: claim_state
WITH old AS (DELETE FROM harvest_sync.oauth_states WHERE used_at < now() - interval '1 day')
INSERT INTO harvest_sync.oauth_states (state_sha256) VALUES (%(state_sha256)s)
ON CONFLICT (state_sha256) DO NOTHING
RETURNING used_at;
