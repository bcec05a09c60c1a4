-- Freshness (issue 11): each project's scheduled daily run carries an Airflow Deadline Alert. When its work logs
-- are not loaded this many hours after the run's scheduled time, the failure alerts' channel says which project
-- is late and since when (primetric_harvest.notify.freshness_alert). Hours may be fractional (0.5 = 30 min).
ALTER TABLE primetric.harvest_settings
    ADD COLUMN IF NOT EXISTS freshness_deadline_hours numeric NOT NULL DEFAULT 6;
ALTER TABLE primetric.harvest_settings DROP CONSTRAINT IF EXISTS harvest_settings_freshness_deadline_hours;
ALTER TABLE primetric.harvest_settings ADD CONSTRAINT harvest_settings_freshness_deadline_hours
    CHECK (freshness_deadline_hours > 0 AND freshness_deadline_hours <= 168);
