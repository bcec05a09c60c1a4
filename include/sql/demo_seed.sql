-- The demo Primetric database (matches the Harvest simulator's "demo" scenario).
-- name: seed
INSERT INTO primetric.employees (id, email, name, role) VALUES
    (1, 'bobby@acme.test', 'Bobby Tables', 'employee'),
    (2, 'sam@acme.test', 'Sam Shaw', 'employee'),
    (3, ' Maria.Lopez@ACME.test ', 'Maria Lopez', 'manager'),   -- matched case- and space-insensitively
    (4, 'ada@acme.test', 'Ada Admin', 'administrator')            -- administrators get no work logs
ON CONFLICT (id) DO NOTHING;

INSERT INTO primetric.projects (id, name, start_date, end_date) VALUES
    (1, 'Apollo', '2026-01-01', NULL),
    (2, 'Zephyr', '2026-06-01', '2026-12-31'),
    (3, 'Internal tools', '2026-01-01', NULL)
ON CONFLICT (id) DO NOTHING;

INSERT INTO primetric.assignments (id, project_id, employee_id, start_date, end_date, created_by_sync) VALUES
    (1, 1, 1, '2026-01-01', NULL, false),          -- Bobby on Apollo
    (2, 1, 3, '2026-01-01', '2026-10-15', false),  -- Maria on Apollo, until mid-October
    (3, 2, 1, '2026-06-01', '2026-12-31', false)   -- Bobby on Zephyr
ON CONFLICT (id) DO NOTHING;

INSERT INTO primetric.harvest_settings (project_id, enabled, sync_since, prevent_new_assignment_creation,
                                        trim_assignments_to_worklogs) VALUES
    (1, true, '2026-09-01', false, true),   -- Apollo: new people get an assignment trimmed to their logs
    (2, true, '2026-09-01', true, false),   -- Zephyr: only people already assigned get work logs
    (3, false, NULL, false, false)          -- Internal tools: integration switched off
ON CONFLICT (project_id) DO NOTHING;

INSERT INTO primetric.harvest_project_links (harvest_project_id, project_id) VALUES
    (1001, 1), (1002, 1),   -- Apollo web and Apollo mobile feed Apollo
    (2001, 2)
ON CONFLICT (harvest_project_id) DO NOTHING;
