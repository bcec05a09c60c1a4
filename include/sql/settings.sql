-- A project's integration settings as the Harvest sync page edits them (primetric_harvest.project_settings).
-- Every change is recorded by the triggers of migration 0007 in harvest_sync.settings_history.

-- The project and its settings; linked is false when it has no harvest_settings row (never set up).
-- name: project
SELECT p.id AS project_id, p.name, p.start_date, p.end_date, s.project_id IS NOT NULL AS linked,
       COALESCE(s.enabled, false) AS enabled, s.sync_since,
       COALESCE(s.prevent_new_assignment_creation, false) AS prevent_new_assignment_creation,
       COALESCE(s.trim_assignments_to_worklogs, false) AS trim_assignments_to_worklogs,
       COALESCE(s.daily_schedule, true) AS daily_schedule, s.daily_schedule_since,
       COALESCE((SELECT array_agg(l.harvest_project_id ORDER BY l.harvest_project_id)
                 FROM primetric.harvest_project_links l WHERE l.project_id = p.id), '{}') AS harvest_project_ids
FROM primetric.projects p
LEFT JOIN primetric.harvest_settings s ON s.project_id = p.id
WHERE p.id = %(project_id)s;

-- Saves of one project's settings take turns: the second sees the first's result (and its version).
-- name: lock
SELECT pg_advisory_xact_lock(hashtextextended('harvest_sync:settings:' || %(project_id)s::text, 0));

-- Who the history names for this transaction's changes (harvest_sync.settings_actor()).
-- name: set_actor
SELECT set_config('harvest_sync.actor', %(actor)s, true);

-- Harvest projects linked to another Primetric project than this one: they cannot be picked here.
-- name: links_elsewhere
SELECT l.harvest_project_id, l.project_id, p.name
FROM primetric.harvest_project_links l JOIN primetric.projects p ON p.id = l.project_id
WHERE l.harvest_project_id = ANY(%(harvest_project_ids)s::bigint[]) AND l.project_id <> %(project_id)s
ORDER BY l.harvest_project_id;

-- Every Harvest project linked anywhere, with its Primetric project (for the "Select projects" field).
-- name: all_links
SELECT l.harvest_project_id, l.project_id, p.name
FROM primetric.harvest_project_links l JOIN primetric.projects p ON p.id = l.project_id
ORDER BY l.harvest_project_id;

-- daily_schedule_since: when the daily schedule was (re)armed; no daily run is due for a day before it.
-- name: upsert
INSERT INTO primetric.harvest_settings AS s (project_id, enabled, sync_since, prevent_new_assignment_creation,
                                             trim_assignments_to_worklogs, daily_schedule, daily_schedule_since)
VALUES (%(project_id)s, %(enabled)s, %(sync_since)s, %(prevent_new_assignment_creation)s,
        %(trim_assignments_to_worklogs)s, %(daily_schedule)s, CASE WHEN %(rearm)s THEN now() END)
ON CONFLICT (project_id) DO UPDATE
SET enabled = excluded.enabled, sync_since = excluded.sync_since,
    prevent_new_assignment_creation = excluded.prevent_new_assignment_creation,
    trim_assignments_to_worklogs = excluded.trim_assignments_to_worklogs,
    daily_schedule = excluded.daily_schedule,
    daily_schedule_since = CASE WHEN %(rearm)s THEN now() ELSE s.daily_schedule_since END;

-- name: unlink
DELETE FROM primetric.harvest_project_links
WHERE project_id = %(project_id)s AND NOT harvest_project_id = ANY(%(harvest_project_ids)s::bigint[]);

-- name: link
INSERT INTO primetric.harvest_project_links (harvest_project_id, project_id)
SELECT unnest(%(harvest_project_ids)s::bigint[]), %(project_id)s
ON CONFLICT (harvest_project_id) DO NOTHING
RETURNING harvest_project_id;

-- So that unpausing the DAG for one run starts no missed daily run as well.
-- name: rearm
UPDATE primetric.harvest_settings SET daily_schedule_since = now()
WHERE project_id = %(project_id)s
RETURNING daily_schedule_since;

-- The last changes of a project's settings and links, newest first; one change = one transaction.
-- name: history
SELECT change_id, min(changed_at) AS changed_at, min(changed_by) AS changed_by,
       jsonb_agg(jsonb_build_object('item', item, 'old', old, 'new', new) ORDER BY id) AS rows
FROM harvest_sync.settings_history
WHERE project_id = %(project_id)s
GROUP BY change_id
ORDER BY max(id) DESC
LIMIT %(limit)s;

-- The newest change, for "changed meanwhile by … at …".
-- name: last_change
SELECT changed_at, changed_by FROM harvest_sync.settings_history
WHERE project_id = %(project_id)s ORDER BY id DESC LIMIT 1;

-- How many synced work logs a reset or a clear of the project replaces.
-- name: synced_worklogs
SELECT count(*) AS worklogs, min(work_date) AS first_work_date, max(work_date) AS last_work_date
FROM primetric.worklogs WHERE project_id = %(project_id)s AND harvest_time_entry_id IS NOT NULL;
