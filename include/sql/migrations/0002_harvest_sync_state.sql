-- The integration's own state, apart from the Primetric contract tables.
CREATE SCHEMA IF NOT EXISTS harvest_sync;

-- Per linked project: where the incremental sync stands.
CREATE TABLE IF NOT EXISTS harvest_sync.sync_state (
    project_id        bigint PRIMARY KEY REFERENCES primetric.projects (id) ON DELETE CASCADE,
    high_water_mark   timestamptz,      -- max(updated_at) of the entries seen so far
    last_run_id       text,
    last_success_at   timestamptz,
    last_summary      jsonb
);

-- Entries we could not turn into work logs, with why; re-examined every run so that a teammate
-- added to Primetric later gets all their hours without a full re-read of Harvest.
CREATE TABLE IF NOT EXISTS harvest_sync.skipped_entries (
    harvest_time_entry_id bigint PRIMARY KEY,
    project_id            bigint  NOT NULL REFERENCES primetric.projects (id) ON DELETE CASCADE,
    harvest_project_id    bigint,
    harvest_user_id       bigint,
    spent_date            text,         -- as Harvest sent it: a bad record may hold "2026-02-30"
    hours                 text,
    notes                 text,
    updated_at            timestamptz,
    reason                text    NOT NULL,
    detail                text,
    skipped_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS skipped_entries_project ON harvest_sync.skipped_entries (project_id);

-- Harvest users as last seen (e-mails change: keyed on the Harvest id).
CREATE TABLE IF NOT EXISTS harvest_sync.harvest_users (
    account_id  text   NOT NULL,
    id          bigint NOT NULL,
    email       text,
    first_name  text,
    last_name   text,
    is_active   boolean,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id)
);

-- One token bucket per Harvest account, shared by every task process on every worker.
CREATE TABLE IF NOT EXISTS harvest_sync.rate_limit (
    account_id  text PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at timestamptz NOT NULL
);

-- Run-scoped staging tables (UNLOGGED, dropped by the load) live here.
CREATE SCHEMA IF NOT EXISTS harvest_staging;
