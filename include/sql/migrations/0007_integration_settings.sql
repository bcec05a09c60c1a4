-- Integration settings edited on the Harvest sync page (plugins/harvest_sync_ui): the daily schedule as a
-- project setting, the history of every settings and links change, a run's extract progress, the cached
-- list of Harvest projects, and the install page's one-time OAuth states.

-- The daily schedule is a setting the DAG file reads at parse time (schedule "@daily" or none): Airflow's
-- pause stays the operator's switch, and "Sync now" on a paused DAG can run once without switching a
-- schedule on. daily_schedule_since: no daily run is due for a day before it (the DAG's start_date), so a
-- schedule switched on, or a DAG unpaused for one run, never starts a missed daily run as well.
ALTER TABLE primetric.harvest_settings
    ADD COLUMN IF NOT EXISTS daily_schedule boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS daily_schedule_since timestamptz;

-- Every change of a project's settings or links: who, when, old -> new. Written by triggers, so in the
-- transaction of the change whoever makes it (the page, a reset run moving sync_since, SQL by hand).
-- No foreign key: the history of a project stays readable while the project's rows come and go.
CREATE TABLE IF NOT EXISTS harvest_sync.settings_history (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id bigint      NOT NULL,
    change_id  bigint      NOT NULL DEFAULT txid_current(),  -- the rows of one transaction are one change
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text        NOT NULL,
    item       text        NOT NULL CHECK (item IN ('settings', 'link')),
    old        jsonb,                                        -- NULL: created
    new        jsonb                                         -- NULL: deleted
);
CREATE INDEX IF NOT EXISTS settings_history_project ON harvest_sync.settings_history (project_id, id DESC);

-- Who made the change: the page sets harvest_sync.actor for its transaction (SET LOCAL); anything else is
-- named by its database user and application_name.
CREATE OR REPLACE FUNCTION harvest_sync.settings_actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('harvest_sync.actor', true), ''),
                    session_user || ' (' || COALESCE(NULLIF(current_setting('application_name', true), ''), 'SQL') || ')')
$$;

-- SECURITY DEFINER: a tool that may write the Primetric tables need not be allowed to write harvest_sync.
CREATE OR REPLACE FUNCTION harvest_sync.record_settings_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    item text := CASE WHEN TG_TABLE_NAME = 'harvest_settings' THEN 'settings' ELSE 'link' END;
BEGIN
    IF old_row IS NOT DISTINCT FROM new_row THEN
        RETURN NULL;  -- an UPDATE that changed nothing is no change
    END IF;
    IF TG_OP = 'UPDATE' AND item = 'settings' THEN  -- keep only what changed
        SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, new_row -> o.key)
        INTO old_row, new_row
        FROM jsonb_each(old_row) o
        WHERE new_row -> o.key IS DISTINCT FROM o.value OR o.key = 'project_id';
    END IF;
    IF TG_OP = 'UPDATE' AND item = 'link' AND old_row -> 'project_id' IS DISTINCT FROM new_row -> 'project_id' THEN
        -- a link moved from one project to another: each project's history shows its side
        INSERT INTO harvest_sync.settings_history (project_id, changed_by, item, old, new)
        VALUES ((old_row ->> 'project_id')::bigint, harvest_sync.settings_actor(), item, old_row, NULL);
        old_row := NULL;
    END IF;
    INSERT INTO harvest_sync.settings_history (project_id, changed_by, item, old, new)
    VALUES (COALESCE(new_row ->> 'project_id', old_row ->> 'project_id')::bigint, harvest_sync.settings_actor(),
            item, old_row, new_row);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS record_change ON primetric.harvest_settings;
CREATE TRIGGER record_change AFTER INSERT OR UPDATE OR DELETE ON primetric.harvest_settings
    FOR EACH ROW EXECUTE FUNCTION harvest_sync.record_settings_change();
DROP TRIGGER IF EXISTS record_change ON primetric.harvest_project_links;
CREATE TRIGGER record_change AFTER INSERT OR UPDATE OR DELETE ON primetric.harvest_project_links
    FOR EACH ROW EXECUTE FUNCTION harvest_sync.record_settings_change();

-- How far a run's extract has got: one row per run, updated per page in autocommit (the page reads it
-- while the extract's own transaction is still open).
CREATE TABLE IF NOT EXISTS harvest_sync.run_progress (
    project_id bigint      NOT NULL,
    run_id     text        NOT NULL,
    pages      integer     NOT NULL DEFAULT 0,
    entries    bigint      NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, run_id)
);

-- Harvest's projects (GET /v2/projects, active and archived) as last fetched for the page's "Select
-- projects", per Harvest account: shared by every API server worker, refreshed after a few minutes.
CREATE TABLE IF NOT EXISTS harvest_sync.harvest_projects (
    account_id text        PRIMARY KEY,
    projects   jsonb       NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now()
);

-- The install page's OAuth2 states, each accepted once: a replayed callback (same state, same cookie) is
-- refused. Only a hash is kept.
CREATE TABLE IF NOT EXISTS harvest_sync.oauth_states (
    state_sha256 text        PRIMARY KEY,
    used_at      timestamptz NOT NULL DEFAULT now()
);
