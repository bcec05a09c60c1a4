-- How far a run's extract has got (harvest_sync.run_progress), for the Harvest sync page.

-- A run's extract (re)starts: its counters start again; rows of runs older than a week go.
-- name: start
WITH old AS (
    DELETE FROM harvest_sync.run_progress WHERE updated_at < now() - interval '7 days'
)
INSERT INTO harvest_sync.run_progress AS r (project_id, run_id, pages, entries, started_at, updated_at)
VALUES (%(project_id)s, %(run_id)s, 0, 0, now(), now())
ON CONFLICT (project_id, run_id) DO UPDATE SET pages = 0, entries = 0, started_at = now(), updated_at = now();

-- name: page
UPDATE harvest_sync.run_progress
SET pages = pages + 1, entries = entries + %(entries)s, updated_at = now()
WHERE project_id = %(project_id)s AND run_id = %(run_id)s;

-- name: read
SELECT pages, entries, started_at, updated_at FROM harvest_sync.run_progress
WHERE project_id = %(project_id)s AND run_id = %(run_id)s;
