-- The "Harvest sync" page of the Airflow UI (plugins/harvest_sync_ui): what it shows of the sync.

-- Every Primetric project, set up or not (search by name: %(q)s, NULL = all), set-up projects first; or the one of
-- %(project_id)s. full_count: how many match, whatever the limit.
-- name: projects
SELECT p.id AS project_id, p.name, p.start_date, s.project_id IS NOT NULL AS linked,
       COALESCE(s.enabled, false) AS enabled, s.sync_since, s.daily_schedule,
       COALESCE(s.prevent_new_assignment_creation, false) AS prevent_new_assignment_creation,
       COALESCE(s.trim_assignments_to_worklogs, false) AS trim_assignments_to_worklogs,
       COALESCE((SELECT array_agg(l.harvest_project_id ORDER BY l.harvest_project_id)
                 FROM primetric.harvest_project_links l WHERE l.project_id = p.id), '{}') AS harvest_project_ids,
       st.last_success_at, now() - st.last_success_at AS last_success_age, st.last_run_id, st.last_summary,
       w.worklogs, w.hours, w.first_work_date, w.last_work_date, m.missing_teammates,
       count(*) OVER () AS full_count
FROM primetric.projects p
LEFT JOIN primetric.harvest_settings s ON s.project_id = p.id
LEFT JOIN harvest_sync.sync_state st ON st.project_id = p.id
CROSS JOIN LATERAL (
    SELECT count(*) AS worklogs, COALESCE(sum(wl.hours), 0) AS hours,
           min(wl.work_date) AS first_work_date, max(wl.work_date) AS last_work_date
    FROM primetric.worklogs wl
    WHERE wl.project_id = p.id AND wl.harvest_time_entry_id IS NOT NULL
) w
CROSS JOIN LATERAL (
    SELECT count(*) AS missing_teammates FROM primetric.missing_teammates mt WHERE mt.project_id = p.id
) m
WHERE (%(project_id)s::bigint IS NULL OR p.id = %(project_id)s::bigint)
  AND (%(q)s::text IS NULL OR p.name ILIKE '%%' || %(q)s::text || '%%')
ORDER BY s.project_id IS NULL, lower(p.name), p.id
LIMIT %(limit)s;

-- What a manager needs to add a missing teammate to Primetric (or assign them to the project).
-- name: missing_teammates
SELECT harvest_user_id, name, email, reason, entries, hours, first_work_date, last_work_date, reported_at
FROM primetric.missing_teammates
WHERE project_id = %(project_id)s
ORDER BY hours DESC, name, harvest_user_id;

-- Entries kept aside, by why. hours and spent_date are stored as Harvest sent them (a bad record may hold
-- anything): only well-formed values are summed / compared.
-- name: skipped_by_reason
SELECT reason, count(*) AS entries,
       COALESCE(sum(CASE WHEN hours ~ '^\s*[0-9]+(\.[0-9]+)?\s*$' THEN hours::numeric END), 0) AS hours,
       min(spent_date) FILTER (WHERE spent_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$') AS first_spent_date,
       max(spent_date) FILTER (WHERE spent_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$') AS last_spent_date,
       min(detail) AS example_detail
FROM harvest_sync.skipped_entries
WHERE project_id = %(project_id)s
GROUP BY reason
ORDER BY count(*) DESC, reason;

-- A person's synced hours on the project (what the page shows once a missing teammate is added).
-- name: hours_by_person
SELECT e.id AS employee_id, e.name, e.email, count(*) AS worklogs, sum(w.hours) AS hours
FROM primetric.worklogs w JOIN primetric.employees e ON e.id = w.employee_id
WHERE w.project_id = %(project_id)s AND w.harvest_time_entry_id IS NOT NULL
GROUP BY e.id, e.name, e.email
ORDER BY sum(w.hours) DESC, e.name;
