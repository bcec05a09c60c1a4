-- Missing-teammate notices (see migrations/0004_notices.sql): one per project per day.

-- Notices of one project never race each other (two runs finishing at once).
-- name: lock_project
SELECT pg_advisory_xact_lock(hashtextextended('harvest_sync:notices:' || %(project_id)s::text, 0));

-- name: today
SELECT COALESCE(%(today)s::date, current_date);

-- The project's missing teammates as the report just wrote them.
-- name: missing
SELECT harvest_user_id, email, name, reason, entries, hours, first_work_date, last_work_date
FROM primetric.missing_teammates
WHERE project_id = %(project_id)s
ORDER BY harvest_user_id;

-- name: noticed
SELECT harvest_user_id, reason, noticed_on
FROM harvest_sync.noticed_teammates
WHERE project_id = %(project_id)s;

-- People who are no longer missing (for that reason) are forgotten: a return is news again.
-- name: forget_resolved
DELETE FROM harvest_sync.noticed_teammates n
WHERE n.project_id = %(project_id)s
  AND NOT EXISTS (SELECT 1 FROM primetric.missing_teammates m
                  WHERE m.project_id = n.project_id AND m.harvest_user_id = n.harvest_user_id
                    AND m.reason = n.reason);

-- Claims the project's notice of the day; no row back = today's notice went out already.
-- name: claim_day
INSERT INTO harvest_sync.notices (project_id, notice_date, run_id, channel, people)
VALUES (%(project_id)s, %(notice_date)s, %(run_id)s, %(channel)s, %(people)s)
ON CONFLICT (project_id, notice_date) DO NOTHING
RETURNING notice_date;

-- name: remember
INSERT INTO harvest_sync.noticed_teammates (project_id, harvest_user_id, reason, noticed_on)
SELECT %(project_id)s, u.harvest_user_id, u.reason, %(notice_date)s
FROM unnest(%(harvest_user_id)s::bigint[], %(reason)s::text[]) AS u (harvest_user_id, reason)
ON CONFLICT DO NOTHING;
