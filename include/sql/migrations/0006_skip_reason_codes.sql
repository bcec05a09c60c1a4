-- Entries kept aside carry one of the documented reason codes (primetric_harvest.skip_reasons.SkipReason;
-- tests/test_skip_reasons.py compares this list with it). A new reason needs a migration that replaces
-- the constraint, so a code the pages and notices cannot explain never reaches the table.
ALTER TABLE harvest_sync.skipped_entries DROP CONSTRAINT IF EXISTS skipped_entries_reason_known;
ALTER TABLE harvest_sync.skipped_entries ADD CONSTRAINT skipped_entries_reason_known CHECK (reason IN (
    'no_matching_employee', 'not_assigned_to_project', 'invalid_spent_date', 'invalid_hours',
    'unknown_harvest_user', 'unlinked_harvest_project'
));
