-- Harvest's projects as last fetched for the Harvest sync page (primetric_harvest.harvest_projects).

-- name: cached
SELECT projects, fetched_at, extract(epoch FROM now() - fetched_at)::float8 AS age_seconds
FROM harvest_sync.harvest_projects WHERE account_id = %(account_id)s;

-- name: store
INSERT INTO harvest_sync.harvest_projects AS h (account_id, projects, fetched_at)
VALUES (%(account_id)s, %(projects)s::jsonb, now())
ON CONFLICT (account_id) DO UPDATE SET projects = excluded.projects, fetched_at = excluded.fetched_at
RETURNING fetched_at;
