-- Deletes in Harvest leave no trace in the API: each daily run re-lists a window of spent_dates
-- and removes what is gone; a full re-list from sync_since runs every few days.
ALTER TABLE primetric.harvest_settings
    ADD COLUMN IF NOT EXISTS reconcile_window_days integer NOT NULL DEFAULT 60
        CHECK (reconcile_window_days >= 0),
    ADD COLUMN IF NOT EXISTS full_reconcile_every_days integer NOT NULL DEFAULT 7
        CHECK (full_reconcile_every_days >= 1);

ALTER TABLE harvest_sync.sync_state
    ADD COLUMN IF NOT EXISTS last_full_reconcile_at timestamptz,
    -- When the extract of the last loaded run started: a slower run that fetched earlier must not
    -- overwrite it with older data.
    ADD COLUMN IF NOT EXISTS last_extract_started_at timestamptz;

-- Staging tables of runs that never reached their load (failed for good) are dropped after a while.
CREATE TABLE IF NOT EXISTS harvest_sync.staging_runs (
    entries_table text PRIMARY KEY,
    project_id    bigint NOT NULL,
    run_id        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
