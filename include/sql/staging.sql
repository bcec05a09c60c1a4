-- Run-scoped staging tables: UNLOGGED (no WAL; rebuilt by a re-run) and dropped by the load.
-- name: create
DROP TABLE IF EXISTS {entries}, {users}, {worklogs}, {skipped};
-- One row per record Harvest listed, values as sent (primetric_harvest.records.entry_row): NULL id for a record
-- that names no entry; `unreadable` says what could not be read, `removed_characters` what text lost.
CREATE UNLOGGED TABLE {entries} (
    harvest_time_entry_id bigint,
    harvest_project_id    bigint,
    harvest_user_id       bigint,
    harvest_user_name     text,
    spent_date            text,
    hours                 text,
    notes                 text,
    is_running            boolean,
    updated_at            timestamptz,
    unreadable            text,
    removed_characters    text
);
CREATE UNLOGGED TABLE {users} (
    harvest_user_id bigint PRIMARY KEY,
    email           text,
    first_name      text,
    last_name       text,
    is_active       boolean
);
CREATE UNLOGGED TABLE {worklogs} (
    harvest_time_entry_id bigint PRIMARY KEY,
    employee_id           bigint NOT NULL,
    assignment_id         bigint,        -- NULL: the person gets a new sync-created assignment
    work_date             date   NOT NULL,
    hours                 numeric NOT NULL,
    description           text,
    harvest_project_id    bigint,
    harvest_user_id       bigint
);
CREATE UNLOGGED TABLE {skipped} (
    harvest_time_entry_id bigint UNIQUE,   -- NULL: a record that names no entry (several may)
    harvest_project_id    bigint,
    harvest_user_id       bigint,
    spent_date            text,
    hours                 text,
    notes                 text,
    updated_at            timestamptz,
    reason                text NOT NULL,
    detail                text
);

-- name: register
INSERT INTO harvest_sync.staging_runs (entries_table, project_id, run_id) VALUES (%(entries)s, %(project_id)s, %(run_id)s)
ON CONFLICT (entries_table) DO UPDATE SET created_at = now();

-- name: unregister
DELETE FROM harvest_sync.staging_runs WHERE entries_table = %(entries)s;

-- Runs older than this whose staging is still here died before their load.
-- name: stale
SELECT entries_table, run_id FROM harvest_sync.staging_runs
WHERE project_id = %(project_id)s AND created_at < now() - interval '3 days';

-- name: truncate_transform_output
TRUNCATE {worklogs}, {skipped};

-- name: drop
DROP TABLE IF EXISTS {entries}, {users}, {worklogs}, {skipped};

-- name: exists
SELECT to_regclass(%(entries)s) IS NOT NULL;

-- name: users
SELECT harvest_user_id, email, first_name, last_name FROM {users};

-- The transform's input: each staged entry once (the newest copy, should paging have shown it
-- twice) and each record that names no entry; the entries kept aside earlier that this run did not
-- fetch again (an unreadable one stays unreadable: its detail says why); and the synced work logs of
-- people whose match changed (a new e-mail, a lost assignment), to be judged again. What lies in the
-- run's prune window and was not fetched is gone from Harvest: it is not re-examined.
-- name: transform_input
SELECT harvest_time_entry_id, harvest_project_id, harvest_user_id, harvest_user_name, spent_date, hours,
       notes, is_running, updated_at, unreadable, removed_characters
FROM (
    SELECT DISTINCT ON (harvest_time_entry_id) *
    FROM {entries}
    WHERE harvest_time_entry_id IS NOT NULL
    ORDER BY harvest_time_entry_id, updated_at DESC NULLS LAST
) fetched
UNION ALL
SELECT harvest_time_entry_id, harvest_project_id, harvest_user_id, harvest_user_name, spent_date, hours,
       notes, is_running, updated_at, unreadable, removed_characters
FROM {entries}
WHERE harvest_time_entry_id IS NULL
UNION ALL
SELECT s.harvest_time_entry_id, s.harvest_project_id, s.harvest_user_id, NULL, s.spent_date, s.hours,
       s.notes, false, s.updated_at, CASE WHEN s.reason = %(unreadable_reason)s THEN s.detail END, NULL
FROM harvest_sync.skipped_entries s
WHERE s.project_id = %(project_id)s
  AND s.harvest_time_entry_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {entries} e WHERE e.harvest_time_entry_id = s.harvest_time_entry_id)
  AND (NOT %(prune)s OR s.spent_date < %(prune_from)s::text OR s.spent_date > %(prune_to)s::text)
UNION ALL
SELECT w.harvest_time_entry_id, w.harvest_project_id, w.harvest_user_id, NULL, w.work_date::text, w.hours::text,
       w.description, false, NULL, NULL, NULL
FROM primetric.worklogs w
WHERE w.project_id = %(project_id)s
  AND w.harvest_user_id = ANY(%(recheck_users)s::bigint[])
  AND w.harvest_project_id IN (SELECT l.harvest_project_id FROM primetric.harvest_project_links l  -- unlinked: kept
                               WHERE l.project_id = %(project_id)s)
  AND NOT EXISTS (SELECT 1 FROM {entries} e WHERE e.harvest_time_entry_id = w.harvest_time_entry_id)
  AND (NOT %(prune)s OR w.work_date < %(prune_from)s::date OR w.work_date > %(prune_to)s::date);

-- The database's clock: the one clock every worker shares.
-- name: now
SELECT clock_timestamp();

-- name: copy_entries
COPY {entries} (harvest_time_entry_id, harvest_project_id, harvest_user_id, harvest_user_name, spent_date, hours,
                notes, is_running, updated_at, unreadable, removed_characters) FROM STDIN;

-- name: copy_users
COPY {users} (harvest_user_id, email, first_name, last_name, is_active) FROM STDIN;

-- name: copy_worklogs
COPY {worklogs} (harvest_time_entry_id, employee_id, assignment_id, work_date, hours, description,
                 harvest_project_id, harvest_user_id) FROM STDIN;

-- name: copy_skipped
COPY {skipped} (harvest_time_entry_id, harvest_project_id, harvest_user_id, spent_date, hours, notes,
                updated_at, reason, detail) FROM STDIN;
