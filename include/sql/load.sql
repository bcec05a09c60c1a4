-- The load: every statement runs in ONE transaction per project run, in this order.
-- {entries} {users} {worklogs} {skipped} are the run's staging tables.

-- Runs of one project never interleave, whatever triggered them.
-- name: lock_project
SELECT pg_advisory_xact_lock(hashtextextended('harvest_sync:project:' || %(project_id)s::text, 0));

-- A reset or a clear: the project's synced work logs go (hand-made ones have no Harvest id).
-- name: clear_synced_worklogs
DELETE FROM primetric.worklogs WHERE project_id = %(project_id)s AND harvest_time_entry_id IS NOT NULL;

-- name: clear_skipped
DELETE FROM harvest_sync.skipped_entries WHERE project_id = %(project_id)s;

-- name: clear_text_changes
DELETE FROM harvest_sync.entry_text_changes WHERE project_id = %(project_id)s;

-- name: upsert_harvest_users
INSERT INTO harvest_sync.harvest_users AS h (account_id, id, email, first_name, last_name, is_active)
SELECT %(account_id)s, harvest_user_id, email, first_name, last_name, is_active FROM {users}
ON CONFLICT (account_id, id) DO UPDATE
SET email = excluded.email, first_name = excluded.first_name, last_name = excluded.last_name,
    is_active = excluded.is_active, seen_at = now()
WHERE (h.email, h.first_name, h.last_name, h.is_active)
      IS DISTINCT FROM (excluded.email, excluded.first_name, excluded.last_name, excluded.is_active);

-- One assignment per person who has none on the project yet (dates are set by set_assignment_span).
-- name: create_sync_assignments
INSERT INTO primetric.assignments (project_id, employee_id, start_date, end_date, created_by_sync)
SELECT %(project_id)s, w.employee_id, min(w.work_date), max(w.work_date), true
FROM {worklogs} w
WHERE w.assignment_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM primetric.assignments a
                  WHERE a.project_id = %(project_id)s AND a.employee_id = w.employee_id)
GROUP BY w.employee_id;

-- Upsert by Harvest id; an unchanged row is not rewritten (not even synced_at).
-- name: upsert_worklogs
WITH sync_assignment AS (
    SELECT DISTINCT ON (employee_id) employee_id, id
    FROM primetric.assignments WHERE project_id = %(project_id)s
    ORDER BY employee_id, created_by_sync DESC, id
), upserted AS (
    INSERT INTO primetric.worklogs AS w (project_id, employee_id, assignment_id, work_date, hours, description,
                                         harvest_time_entry_id, harvest_project_id, harvest_user_id, synced_at)
    SELECT %(project_id)s, s.employee_id, COALESCE(s.assignment_id, a.id), s.work_date, s.hours, s.description,
           s.harvest_time_entry_id, s.harvest_project_id, s.harvest_user_id, now()
    FROM {worklogs} s
    LEFT JOIN sync_assignment a ON s.assignment_id IS NULL AND a.employee_id = s.employee_id
    ON CONFLICT (harvest_time_entry_id) DO UPDATE
    SET project_id = excluded.project_id, employee_id = excluded.employee_id,
        assignment_id = excluded.assignment_id, work_date = excluded.work_date, hours = excluded.hours,
        description = excluded.description, harvest_project_id = excluded.harvest_project_id,
        harvest_user_id = excluded.harvest_user_id, synced_at = excluded.synced_at
    WHERE (w.project_id, w.employee_id, w.assignment_id, w.work_date, w.hours, w.description,
           w.harvest_project_id, w.harvest_user_id)
          IS DISTINCT FROM
          (excluded.project_id, excluded.employee_id, excluded.assignment_id, excluded.work_date, excluded.hours,
           excluded.description, excluded.harvest_project_id, excluded.harvest_user_id)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated FROM upserted;

-- What Harvest no longer lists inside the run's prune window is gone (deleted, or moved to a project
-- not linked here): its work log goes too. Only work logs of Harvest projects still linked are listed:
-- those of a Harvest project unlinked since stay until "Clear data".
-- name: prune_worklogs
DELETE FROM primetric.worklogs w
WHERE w.project_id = %(project_id)s AND w.harvest_time_entry_id IS NOT NULL
  AND w.harvest_project_id IN (SELECT l.harvest_project_id FROM primetric.harvest_project_links l
                               WHERE l.project_id = %(project_id)s)
  AND (%(prune_from)s::date IS NULL OR w.work_date >= %(prune_from)s::date)
  AND (%(prune_to)s::date IS NULL OR w.work_date <= %(prune_to)s::date)
  AND NOT EXISTS (SELECT 1 FROM {entries} e WHERE e.harvest_time_entry_id = w.harvest_time_entry_id);

-- A newer run's data must never be overwritten by an older extract.
-- name: last_extract_started_at
SELECT last_extract_started_at FROM harvest_sync.sync_state WHERE project_id = %(project_id)s;

-- An entry whose person can no longer be matched (a missing teammate: e-mail changed, assignment lost)
-- leaves the work logs; it is kept in skipped_entries with the reason instead. A version of an entry we
-- cannot use (unreadable, a bad date or hours…) is kept aside while its work log stays as it was:
-- removing_reasons lists the reasons that remove (SkipReason.removes_work_log).
-- name: delete_worklogs_now_skipped
DELETE FROM primetric.worklogs w USING {skipped} s
WHERE w.harvest_time_entry_id = s.harvest_time_entry_id AND w.project_id = %(project_id)s
  AND s.reason = ANY(%(removing_reasons)s::text[]);

-- Entries kept aside this run whose work log keeps its last readable version (in any project).
-- name: previous_versions_kept
SELECT count(*) FROM {skipped} s JOIN primetric.worklogs w ON w.harvest_time_entry_id = s.harvest_time_entry_id
WHERE NOT s.reason = ANY(%(removing_reasons)s::text[]);

-- What this run kept aside replaces what the project had kept aside; unchanged rows are not rewritten.
-- name: drop_unskipped
DELETE FROM harvest_sync.skipped_entries k
WHERE k.project_id = %(project_id)s
  AND NOT EXISTS (SELECT 1 FROM {skipped} s WHERE s.harvest_time_entry_id = k.harvest_time_entry_id);

-- name: upsert_skipped
INSERT INTO harvest_sync.skipped_entries AS k (harvest_time_entry_id, project_id, harvest_project_id, harvest_user_id,
                                               spent_date, hours, notes, updated_at, reason, detail)
SELECT harvest_time_entry_id, %(project_id)s, harvest_project_id, harvest_user_id, spent_date, hours, notes,
       updated_at, reason, detail
FROM {skipped}
ON CONFLICT (harvest_time_entry_id) DO UPDATE
SET project_id = excluded.project_id, harvest_project_id = excluded.harvest_project_id,
    harvest_user_id = excluded.harvest_user_id, spent_date = excluded.spent_date, hours = excluded.hours,
    notes = excluded.notes, updated_at = excluded.updated_at, reason = excluded.reason, detail = excluded.detail,
    skipped_at = now()
WHERE (k.project_id, k.harvest_project_id, k.harvest_user_id, k.spent_date, k.hours, k.notes, k.updated_at,
       k.reason, k.detail)
      IS DISTINCT FROM
      (excluded.project_id, excluded.harvest_project_id, excluded.harvest_user_id, excluded.spent_date,
       excluded.hours, excluded.notes, excluded.updated_at, excluded.reason, excluded.detail);

-- An entry that landed (here or, moved, in another project) is no longer skipped anywhere.
-- name: unskip_landed
DELETE FROM harvest_sync.skipped_entries k USING {worklogs} w
WHERE k.harvest_time_entry_id = w.harvest_time_entry_id;

-- What this run fetched replaces the detail of text it had to alter (see entry_text_changes); an entry
-- neither synced nor kept aside any more has none.
-- name: drop_text_changes
DELETE FROM harvest_sync.entry_text_changes c
WHERE (c.project_id = %(project_id)s
       AND NOT EXISTS (SELECT 1 FROM primetric.worklogs w WHERE w.harvest_time_entry_id = c.harvest_time_entry_id)
       AND NOT EXISTS (SELECT 1 FROM harvest_sync.skipped_entries k
                       WHERE k.harvest_time_entry_id = c.harvest_time_entry_id))
   OR EXISTS (SELECT 1 FROM {entries} e
              WHERE e.harvest_time_entry_id = c.harvest_time_entry_id AND e.removed_characters IS NULL);

-- name: upsert_text_changes
INSERT INTO harvest_sync.entry_text_changes AS c (harvest_time_entry_id, project_id, detail)
SELECT DISTINCT ON (harvest_time_entry_id) harvest_time_entry_id, %(project_id)s, removed_characters
FROM {entries}
WHERE harvest_time_entry_id IS NOT NULL AND removed_characters IS NOT NULL
ORDER BY harvest_time_entry_id, updated_at DESC NULLS LAST
ON CONFLICT (harvest_time_entry_id) DO UPDATE
SET project_id = excluded.project_id, detail = excluded.detail, noted_at = now()
WHERE (c.project_id, c.detail) IS DISTINCT FROM (excluded.project_id, excluded.detail);

-- name: sync_assignment_work_spans
SELECT a.id AS assignment_id, min(w.work_date) AS first_work_date, max(w.work_date) AS last_work_date
FROM primetric.assignments a
JOIN primetric.worklogs w ON w.assignment_id = a.id
WHERE a.project_id = %(project_id)s AND a.created_by_sync
GROUP BY a.id;

-- name: set_assignment_spans
UPDATE primetric.assignments a
SET start_date = span.start_date, end_date = span.end_date
FROM unnest(%(assignment_id)s::bigint[], %(start_date)s::date[], %(end_date)s::date[])
     AS span (assignment_id, start_date, end_date)
WHERE a.id = span.assignment_id AND a.created_by_sync
  AND (a.start_date, a.end_date) IS DISTINCT FROM (span.start_date, span.end_date);

-- A sync-created assignment left without any work log goes; hand-made ones are never touched.
-- name: delete_empty_sync_assignments
DELETE FROM primetric.assignments a
WHERE a.project_id = %(project_id)s AND a.created_by_sync
  AND NOT EXISTS (SELECT 1 FROM primetric.worklogs w WHERE w.assignment_id = a.id);

-- name: fetched_high_water_mark
SELECT max(updated_at) FROM {entries};

-- name: save_state
INSERT INTO harvest_sync.sync_state AS st (project_id, high_water_mark, last_run_id, last_success_at, last_summary,
                                           last_full_reconcile_at, last_extract_started_at)
VALUES (%(project_id)s, %(high_water_mark)s, %(run_id)s, now(), %(summary)s,
        CASE WHEN %(full_reconcile)s THEN now() END, %(extract_started_at)s)
ON CONFLICT (project_id) DO UPDATE
SET high_water_mark = CASE WHEN %(clear)s THEN NULL
                           ELSE GREATEST(st.high_water_mark, excluded.high_water_mark) END,
    last_full_reconcile_at = CASE WHEN %(clear)s THEN NULL
                                  ELSE COALESCE(excluded.last_full_reconcile_at, st.last_full_reconcile_at) END,
    last_extract_started_at = GREATEST(st.last_extract_started_at, excluded.last_extract_started_at),
    last_run_id = excluded.last_run_id, last_success_at = excluded.last_success_at,
    last_summary = excluded.last_summary;

-- name: set_sync_since
UPDATE primetric.harvest_settings SET sync_since = %(since)s WHERE project_id = %(project_id)s;

-- name: missing_teammate_entries
SELECT k.harvest_time_entry_id, k.harvest_user_id, k.spent_date, k.hours, k.reason
FROM harvest_sync.skipped_entries k WHERE k.project_id = %(project_id)s;

-- name: skipped_by_reason
SELECT reason, count(*) AS entries FROM harvest_sync.skipped_entries
WHERE project_id = %(project_id)s GROUP BY reason ORDER BY reason;

-- name: known_harvest_users
SELECT id AS harvest_user_id, email, first_name, last_name FROM harvest_sync.harvest_users
WHERE account_id = %(account_id)s;

-- name: clear_missing_teammates
DELETE FROM primetric.missing_teammates WHERE project_id = %(project_id)s;

-- name: insert_missing_teammates
INSERT INTO primetric.missing_teammates (project_id, harvest_user_id, email, name, reason, entries, hours,
                                         first_work_date, last_work_date, reported_at)
SELECT %(project_id)s, m.*, now()
FROM unnest(%(harvest_user_id)s::bigint[], %(email)s::text[], %(name)s::text[], %(reason)s::text[],
            %(entries)s::int[], %(hours)s::numeric[], %(first_work_date)s::date[], %(last_work_date)s::date[])
     AS m (harvest_user_id, email, name, reason, entries, hours, first_work_date, last_work_date);
