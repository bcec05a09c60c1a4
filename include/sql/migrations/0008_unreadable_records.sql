-- Every record Harvest can send lands or is kept aside with a documented reason (issue 10).

-- A record whose id, user, project or notes cannot be read: a reason of its own
-- (primetric_harvest.skip_reasons.SkipReason; tests/test_skip_reasons.py compares the lists).
ALTER TABLE harvest_sync.skipped_entries DROP CONSTRAINT IF EXISTS skipped_entries_reason_known;
ALTER TABLE harvest_sync.skipped_entries ADD CONSTRAINT skipped_entries_reason_known CHECK (reason IN (
    'no_matching_employee', 'not_assigned_to_project', 'unreadable_entry', 'invalid_spent_date', 'invalid_hours',
    'unknown_harvest_user', 'unlinked_harvest_project'
));

-- A record that names no entry (no readable id) is kept aside too, by the run that saw it: its key is null.
-- Entry ids stay unique (NULLs never equal one another), which ON CONFLICT (harvest_time_entry_id) relies on.
ALTER TABLE harvest_sync.skipped_entries DROP CONSTRAINT IF EXISTS skipped_entries_pkey;
ALTER TABLE harvest_sync.skipped_entries ALTER COLUMN harvest_time_entry_id DROP NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS skipped_entries_entry ON harvest_sync.skipped_entries (harvest_time_entry_id);

-- Text PostgreSQL cannot store (U+0000, lone surrogates) is stored without those characters; each entry so
-- altered has its detail here, whether it became a work log or was kept aside.
CREATE TABLE IF NOT EXISTS harvest_sync.entry_text_changes (
    harvest_time_entry_id bigint PRIMARY KEY,
    project_id            bigint NOT NULL REFERENCES primetric.projects (id) ON DELETE CASCADE,
    detail                text   NOT NULL,
    noted_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS entry_text_changes_project ON harvest_sync.entry_text_changes (project_id);
