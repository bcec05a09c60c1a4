-- What the sync needs to know about one linked Primetric project.

-- name: rules
SELECT p.id AS project_id, p.name, p.start_date, p.end_date, s.enabled, s.sync_since,
       s.prevent_new_assignment_creation, s.trim_assignments_to_worklogs,
       s.reconcile_window_days, s.full_reconcile_every_days,
       st.high_water_mark, st.last_full_reconcile_at,
       COALESCE((SELECT array_agg(l.harvest_project_id ORDER BY l.harvest_project_id)
                 FROM primetric.harvest_project_links l WHERE l.project_id = p.id), '{}') AS harvest_project_ids
FROM primetric.projects p
JOIN primetric.harvest_settings s ON s.project_id = p.id
LEFT JOIN harvest_sync.sync_state st ON st.project_id = p.id
WHERE p.id = %(project_id)s;

-- name: employees
SELECT id AS employee_id, email, name, role FROM primetric.employees;

-- Who the project's synced work logs belong to now (to notice a changed e-mail or a lost assignment).
-- name: synced_people
SELECT DISTINCT harvest_user_id, employee_id FROM primetric.worklogs
WHERE project_id = %(project_id)s AND harvest_time_entry_id IS NOT NULL;

-- name: assignments
SELECT id AS assignment_id, employee_id, start_date, end_date, created_by_sync
FROM primetric.assignments WHERE project_id = %(project_id)s;

-- Every enabled linked project, for DAG generation: one cheap query at parse time. The daily schedule
-- is a project setting (schedule "@daily" or none); daily_schedule_since becomes the DAG's start_date.
-- name: linked_projects
SELECT s.project_id, p.name,
       COALESCE((SELECT array_agg(l.harvest_project_id ORDER BY l.harvest_project_id)
                 FROM primetric.harvest_project_links l WHERE l.project_id = s.project_id), '{}') AS harvest_project_ids,
       s.daily_schedule, s.daily_schedule_since, s.freshness_deadline_hours
FROM primetric.harvest_settings s JOIN primetric.projects p ON p.id = s.project_id
WHERE s.enabled
ORDER BY s.project_id;
