-- Notices about missing teammates: at most one per project per day, and each person (with the
-- reason they cannot be synced) is named once, not on every run.

-- The day's notice of a project: its row is claimed before the message is sent.
CREATE TABLE IF NOT EXISTS harvest_sync.notices (
    project_id  bigint NOT NULL REFERENCES primetric.projects (id) ON DELETE CASCADE,
    notice_date date   NOT NULL,
    run_id      text,
    channel     text   NOT NULL,                 -- slack, smtp or log
    people      jsonb  NOT NULL,                 -- whom it named
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, notice_date)
);

-- Who has been named, for which reason. A row goes when the person is no longer missing, so that
-- a later return to the missing list is news again.
CREATE TABLE IF NOT EXISTS harvest_sync.noticed_teammates (
    project_id      bigint NOT NULL REFERENCES primetric.projects (id) ON DELETE CASCADE,
    harvest_user_id bigint NOT NULL,
    reason          text   NOT NULL,
    noticed_on      date   NOT NULL,
    PRIMARY KEY (project_id, harvest_user_id, reason)
);
