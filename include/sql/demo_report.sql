-- What `make demo` prints after the run.
-- name: worklogs_per_person
SELECT p.name AS project, e.name AS person, count(*) AS work_logs, sum(w.hours) AS hours,
       min(w.work_date) AS first_day, max(w.work_date) AS last_day
FROM primetric.worklogs w
JOIN primetric.employees e ON e.id = w.employee_id
JOIN primetric.projects p ON p.id = w.project_id
WHERE w.harvest_time_entry_id IS NOT NULL AND w.project_id = %(project_id)s
GROUP BY p.name, e.name ORDER BY p.name, e.name;

-- name: assignments
SELECT p.name AS project, e.name AS person, a.start_date, a.end_date,
       CASE WHEN a.created_by_sync THEN 'sync' ELSE 'hand-made' END AS created_by
FROM primetric.assignments a
JOIN primetric.employees e ON e.id = a.employee_id
JOIN primetric.projects p ON p.id = a.project_id
WHERE a.project_id = %(project_id)s
ORDER BY p.name, e.name, a.start_date;

-- name: missing_teammates
SELECT name, email, reason, entries, hours, first_work_date, last_work_date
FROM primetric.missing_teammates WHERE project_id = %(project_id)s ORDER BY hours DESC, name;
