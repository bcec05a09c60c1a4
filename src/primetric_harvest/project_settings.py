"""A Primetric project's Harvest integration settings, as the Harvest sync page reads, checks and saves them.

The settings are the contract tables ``primetric.harvest_settings`` (one row per set-up project) and
``primetric.harvest_project_links`` (its Harvest projects). The page edits them; so may SQL by hand or
Primetric itself. Each save is one transaction: checked against the version the editor started from (two
saves of the same project at once: the second is refused, "changed meanwhile, reload"), then written, and
recorded in ``harvest_sync.settings_history`` by the triggers of migration 0007 (who, when, old → new).

:func:`read_form` checks what the page sends (pure; the 422s with the field named); :func:`save` does the
rest against the database. SQL: include/sql/settings.sql.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from primetric_harvest.db import one_row, query
from primetric_harvest.plan import SINCE, InvalidSyncRequest, parse_sync_request, shown

MAX_BIGINT = 2**63 - 1
MAX_HARVEST_PROJECTS = 200  # per Primetric project: more is a mistake, not a setting

# The form's fields, in the page's words (also what the 422s name).
ENABLED = "enabled"
HARVEST_PROJECT_IDS = "harvest_project_ids"
PREVENT = "prevent_new_assignment_creation"
TRIM = "trim_assignments_to_worklogs"
SYNC_SINCE = "sync_since"
DAILY = "daily_schedule"
VERSION = "version"
FORM_FIELDS = (ENABLED, HARVEST_PROJECT_IDS, PREVENT, TRIM, SYNC_SINCE, DAILY)
LABELS = {
    ENABLED: "Sync work logs from Harvest",
    HARVEST_PROJECT_IDS: "Harvest projects",
    PREVENT: "Prevent new assignment creation",
    TRIM: "Trim assignments to work logs",
    SYNC_SINCE: "Sync work logs from",
    DAILY: "Daily sync",
    "daily_schedule_since": "Daily sync armed from",  # set by the page, never edited: no missed daily run
    # Set by SQL (migration 0009), not a field of the form yet: shown in the history when it changes.
    "freshness_deadline_hours": "Late alert after (hours)",
}
# The one-line explanations of Primetric's help, shown under the checkboxes.
HELP = {
    PREVENT: "Only people already assigned to the project get their work logs; nobody is assigned by the sync.",
    TRIM: "Assignments the sync creates start at the person's first work log and end at their last one.",
}


class SettingsError(Exception):
    """A save that cannot be made as asked: ``field`` names the form field, ``status`` the HTTP answer."""

    def __init__(self, message: str, field: str | None = None, status: int = 422):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True, kw_only=True)
class IntegrationSettings:
    """What the "Integration settings" form edits."""

    enabled: bool = False
    harvest_project_ids: tuple[int, ...] = ()
    prevent_new_assignment_creation: bool = False
    trim_assignments_to_worklogs: bool = False
    sync_since: dt.date | None = None  # None: the project's start date
    daily_schedule: bool = True

    def version(self, linked: bool = True) -> str:
        """A short fingerprint of the settings: an editor sends back the one it started from."""
        if not linked:
            return "not-set-up"
        data = {**asdict(self), "sync_since": self.sync_since.isoformat() if self.sync_since else None}
        data["harvest_project_ids"] = sorted(self.harvest_project_ids)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class ProjectSetup:
    """A Primetric project and its integration settings (``linked``: it has a harvest_settings row)."""

    project_id: int
    name: str
    start_date: dt.date | None
    end_date: dt.date | None
    linked: bool
    settings: IntegrationSettings
    daily_schedule_since: dt.datetime | None = None

    @property
    def version(self) -> str:
        return self.settings.version(self.linked)


@dataclass(frozen=True)
class LinkElsewhere:
    """A Harvest project that feeds another Primetric project: it cannot be picked for this one."""

    harvest_project_id: int
    project_id: int
    project_name: str


@dataclass(frozen=True, kw_only=True)
class Saved:
    """What a save did, and what the page does next (a new link syncs at once)."""

    setup: ProjectSetup
    before: ProjectSetup
    changed: bool
    newly_enabled: bool  # the project's DAG must appear (it did not exist, or the sync was off)
    rearmed: bool  # daily_schedule_since moved to now: no missed daily run starts


@dataclass(frozen=True)
class HistoryEntry:
    """One change of a project's settings or links (one transaction): who, when, and what went from → to."""

    changed_at: dt.datetime
    changed_by: str
    changes: tuple[tuple[str, str, str], ...] = field(default=())  # (what, old, new)


def valid_id(value: int) -> bool:
    """Ids are bigint: anything else is an id that cannot exist (a 404, never a database error)."""
    return 0 < value <= MAX_BIGINT


# -- reading ---------------------------------------------------------------------------------------------
def load(conn: psycopg.Connection, project_id: int) -> ProjectSetup | None:
    """The project and its settings; None if Primetric has no such project."""
    if not valid_id(project_id):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("settings", "project"), {"project_id": project_id}).fetchone()
    if row is None:
        return None
    return ProjectSetup(
        project_id=row["project_id"],
        name=row["name"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        linked=row["linked"],
        daily_schedule_since=row["daily_schedule_since"],
        settings=IntegrationSettings(
            enabled=row["enabled"],
            harvest_project_ids=tuple(int(h) for h in row["harvest_project_ids"]),
            prevent_new_assignment_creation=row["prevent_new_assignment_creation"],
            trim_assignments_to_worklogs=row["trim_assignments_to_worklogs"],
            sync_since=row["sync_since"],
            daily_schedule=row["daily_schedule"],
        ),
    )


def links_elsewhere(
    conn: psycopg.Connection, project_id: int, harvest_project_ids: Collection[int]
) -> list[LinkElsewhere]:
    rows = conn.execute(
        query("settings", "links_elsewhere"),
        {"project_id": project_id, "harvest_project_ids": list(harvest_project_ids)},
    ).fetchall()
    return [LinkElsewhere(int(h), int(p), name) for h, p, name in rows]


def all_links(conn: psycopg.Connection) -> dict[int, LinkElsewhere]:
    """Every linked Harvest project → the Primetric project it feeds."""
    rows = conn.execute(query("settings", "all_links")).fetchall()
    return {int(h): LinkElsewhere(int(h), int(p), name) for h, p, name in rows}


# -- checking what the page sends ----------------------------------------------------------------------------
def _bool(form: Mapping[str, Any], key: str, default: bool) -> bool:
    value = form.get(key, default)
    if not isinstance(value, bool):
        raise SettingsError(f"{LABELS[key]} ({key}) must be true or false, not {shown(value)}", key)
    return value


def read_form(form: Mapping[str, Any], *, today: dt.date, project_name: str) -> tuple[IntegrationSettings, str]:
    """The settings and the version the editor started from, or :class:`SettingsError` naming the field.

    ``today``: the server's date. The date rules are the DAG's own (plan.parse_sync_request).
    """
    if not isinstance(form, Mapping):
        raise SettingsError(f"expected a JSON object with the fields {', '.join(FORM_FIELDS)}")
    unknown = sorted(str(k) for k in form if k not in (*FORM_FIELDS, VERSION))
    if unknown:
        raise SettingsError(
            f"unknown field {', '.join(shown(k) for k in unknown)}: the settings are {', '.join(FORM_FIELDS)}",
            unknown[0],
        )
    version = form.get(VERSION)
    if not isinstance(version, str) or not version or len(version) > 40:
        raise SettingsError(
            f"version must be the version the form was loaded with (got {shown(version)}): reload the page",
            VERSION,
        )
    ids = form.get(HARVEST_PROJECT_IDS, [])
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise SettingsError(
            f"{LABELS[HARVEST_PROJECT_IDS]} ({HARVEST_PROJECT_IDS}) must be a list of Harvest project ids (integers), "
            f"not {shown(ids)}",
            HARVEST_PROJECT_IDS,
        )
    bad = [i for i in ids if not valid_id(i)]
    if bad:
        raise SettingsError(f"{shown(bad[0])} is not a Harvest project id", HARVEST_PROJECT_IDS)
    if len(set(ids)) > MAX_HARVEST_PROJECTS:
        raise SettingsError(
            f"at most {MAX_HARVEST_PROJECTS} Harvest projects per Primetric project", HARVEST_PROJECT_IDS
        )
    since = form.get(SYNC_SINCE)
    try:
        conf = {SINCE: since} if since not in (None, "") else {}
        request = parse_sync_request(conf, today=today, project_name=project_name)
    except InvalidSyncRequest as exc:
        raise SettingsError(f"{LABELS[SYNC_SINCE]}: {exc}".replace("since=", "date "), SYNC_SINCE) from None
    settings = IntegrationSettings(
        enabled=_bool(form, ENABLED, False),
        harvest_project_ids=tuple(sorted(set(ids))),
        prevent_new_assignment_creation=_bool(form, PREVENT, False),
        trim_assignments_to_worklogs=_bool(form, TRIM, False),
        sync_since=request.since,
        daily_schedule=_bool(form, DAILY, True),
    )
    if settings.enabled and not settings.harvest_project_ids:
        raise SettingsError(
            "select at least one Harvest project to sync from (or switch the sync off)", HARVEST_PROJECT_IDS
        )
    return settings, version


def check_links(
    wanted: IntegrationSettings,
    current: IntegrationSettings,
    elsewhere: Collection[LinkElsewhere],
    harvest_lists: Callable[[list[int]], set[int] | None],
) -> None:
    """One Primetric project per Harvest project, and only projects Harvest lists (a link kept is always fine).

    ``harvest_lists(new_ids)``: the ids Harvest lists (asked only when a new id is picked), None if Harvest
    cannot be reached.
    """
    if elsewhere:
        taken = ", ".join(
            f"Harvest project {e.harvest_project_id} feeds Primetric project {e.project_name!r} (#{e.project_id})"
            for e in elsewhere
        )
        raise SettingsError(
            f"{taken}: a Harvest project feeds one Primetric project; unlink it there first", HARVEST_PROJECT_IDS
        )
    new = sorted(set(wanted.harvest_project_ids) - set(current.harvest_project_ids))
    if not new:
        return
    listed = harvest_lists(new)
    if listed is None:
        raise SettingsError(
            f"Harvest could not be reached to check Harvest project(s) {', '.join(map(str, new))}: nothing was saved; "
            "try again in a minute",
            HARVEST_PROJECT_IDS,
            status=503,
        )
    unknown = [i for i in new if i not in listed]
    if unknown:
        raise SettingsError(
            f"Harvest does not list project id(s) {', '.join(map(str, unknown))} in this account (active or "
            "archived): pick the projects from the list",
            HARVEST_PROJECT_IDS,
        )


# -- saving ------------------------------------------------------------------------------------------------
def save(
    conn: psycopg.Connection,
    project_id: int,
    form: Mapping[str, Any],
    *,
    actor: str,
    today: dt.date,
    harvest_lists: Callable[[list[int]], set[int] | None],
) -> Saved:
    """Check and save the form in one transaction (history rows included); :class:`SettingsError` if refused.

    ``conn`` must not be in a transaction; ``actor`` is who the history names.
    """
    with conn.transaction():
        conn.execute(query("settings", "lock"), {"project_id": project_id})
        before = load(conn, project_id)
        if before is None:
            raise SettingsError(f"Primetric has no project {project_id}", status=404)
        wanted, version = read_form(form, today=today, project_name=before.name)
        if version != before.version:
            last = conn.execute(query("settings", "last_change"), {"project_id": project_id}).fetchone()
            by = f" by {last[1]} at {last[0]:%Y-%m-%d %H:%M:%S %Z}" if last else ""
            raise SettingsError(
                f"The settings of {before.name!r} changed meanwhile{by}: reload the page to see them, then save again. "
                "Nothing was saved.",
                VERSION,
                status=409,
            )
        current = before.settings
        check_links(wanted, current, links_elsewhere(conn, project_id, wanted.harvest_project_ids), harvest_lists)
        newly_enabled = wanted.enabled and not (before.linked and current.enabled)
        # Arm the daily schedule from now when it starts (again): the DAG's start_date is this moment, so
        # neither its appearance nor an unpause starts a missed daily run.
        rearm = wanted.daily_schedule and (newly_enabled or not current.daily_schedule)
        changed = not before.linked or wanted != current
        if changed:
            conn.execute(query("settings", "set_actor"), {"actor": actor})
            conn.execute(
                query("settings", "upsert"),
                {
                    "project_id": project_id,
                    "enabled": wanted.enabled,
                    "sync_since": wanted.sync_since,
                    "prevent_new_assignment_creation": wanted.prevent_new_assignment_creation,
                    "trim_assignments_to_worklogs": wanted.trim_assignments_to_worklogs,
                    "daily_schedule": wanted.daily_schedule,
                    "rearm": rearm,
                },
            )
            ids = list(wanted.harvest_project_ids)
            conn.execute(query("settings", "unlink"), {"project_id": project_id, "harvest_project_ids": ids})
            new = [i for i in ids if i not in current.harvest_project_ids]
            params = {"project_id": project_id, "harvest_project_ids": new}
            linked = {r[0] for r in conn.execute(query("settings", "link"), params)}
            if linked != set(new):
                raise SettingsError(
                    f"Harvest project(s) {', '.join(map(str, sorted(set(new) - linked)))} were linked to another "
                    "Primetric project meanwhile: reload the page. Nothing was saved.",
                    HARVEST_PROJECT_IDS,
                    status=409,
                )
        after = load(conn, project_id)
    assert after is not None
    return Saved(setup=after, before=before, changed=changed, newly_enabled=newly_enabled, rearmed=changed and rearm)


def rearm_daily_schedule(conn: psycopg.Connection, project_id: int, *, actor: str) -> dt.datetime | None:
    """Move the daily schedule's start to now (recorded in the history); None if the project is not set up."""
    with conn.transaction():
        conn.execute(query("settings", "set_actor"), {"actor": actor})
        row = conn.execute(query("settings", "rearm"), {"project_id": project_id}).fetchone()
    return row[0] if row else None


# -- history -----------------------------------------------------------------------------------------------
_NOT_SET_UP_BY_THE_FORM = (
    "daily_schedule_since",
    "reconcile_window_days",
    "full_reconcile_every_days",
    "freshness_deadline_hours",
)
_SHOWN_KEYS = (*FORM_FIELDS, *_NOT_SET_UP_BY_THE_FORM)


def _text(key: str, value: Any) -> str:
    if key == "daily_schedule_since" and isinstance(value, str):
        return value[:19].replace("T", " ") + " UTC"  # a timestamptz as JSON: 2026-11-30T19:42:19.5+00:00
    if value is None:
        return "project start" if key == SYNC_SINCE else "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def describe_change(rows: list[dict], harvest_label: Callable[[int], str] = str) -> tuple[tuple[str, str, str], ...]:
    """The (what, old, new) lines of one change's history rows."""
    out: list[tuple[str, str, str]] = []
    for row in rows:
        old, new = row.get("old") or {}, row.get("new") or {}
        if row["item"] == "link":
            harvest_id = int((new or old)["harvest_project_id"])
            what = f"Harvest project {harvest_label(harvest_id)}"
            out.append((what, "linked" if old else "not linked", "linked" if new else "unlinked"))
            continue
        if not old:
            out.append(("Set up", "—", "Harvest sync set up"))
        elif not new:
            out.append(("Harvest sync", "set up", "removed"))
            continue
        for key in _SHOWN_KEYS:
            if key in new and (not old or old.get(key) != new.get(key)):
                if not old and key in _NOT_SET_UP_BY_THE_FORM:
                    continue
                label = LABELS.get(key, key.replace("_", " "))
                out.append((label, _text(key, old.get(key)) if old else "—", _text(key, new.get(key))))
    return tuple(out)


def history(
    conn: psycopg.Connection, project_id: int, limit: int = 30, harvest_label: Callable[[int], str] = str
) -> list[HistoryEntry]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query("settings", "history"), {"project_id": project_id, "limit": limit}).fetchall()
    return [HistoryEntry(r["changed_at"], r["changed_by"], describe_change(r["rows"], harvest_label)) for r in rows]


def synced_worklogs(conn: psycopg.Connection, project_id: int) -> tuple[int, dt.date | None, dt.date | None]:
    """(count, first, last work date) of the project's synced work logs: what a reset or a clear replaces."""
    count, first, last = one_row(conn.execute(query("settings", "synced_worklogs"), {"project_id": project_id}))
    return int(count), first, last
