"""Business rules of the sync: plain pandas in, pandas out; no Airflow, no database.

Frames and their columns (ids are int64, dates are python ``date`` objects or NaT-able datetimes):

- time entries (``ENTRY_COLUMNS``): as staged from Harvest, values still as Harvest sent them
  (``spent_date`` and ``hours`` are text so that a malformed record is kept aside, not lost);
- harvest users: ``harvest_user_id, email, first_name, last_name``;
- employees: ``employee_id, email, name, role``;
- assignments: ``assignment_id, employee_id, start_date, end_date, created_by_sync`` of one project.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from primetric_harvest.records import ENTRY_ROW
from primetric_harvest.skip_reasons import MISSING_TEAMMATE_REASONS, SkipReason

ENTRY_COLUMNS = list(ENTRY_ROW)  # the staged row of a time entry: one home, records.py

WORKLOG_COLUMNS = [
    "harvest_time_entry_id",
    "employee_id",
    "assignment_id",
    "work_date",
    "hours",
    "description",
    "harvest_project_id",
    "harvest_user_id",
]

SKIPPED_COLUMNS = [
    "harvest_time_entry_id",
    "harvest_project_id",
    "harvest_user_id",
    "spent_date",
    "hours",
    "notes",
    "updated_at",
    "reason",
    "detail",
]


# Only these Primetric roles log work; administrators do not.
WORKING_ROLES = ("manager", "employee")
MAX_HOURS_PER_ENTRY = 24


@dataclass(frozen=True)
class ProjectRules:
    """The per-project settings that shape the transform."""

    project_id: int
    start_date: dt.date | None
    end_date: dt.date | None
    prevent_new_assignment_creation: bool = False
    trim_assignments_to_worklogs: bool = False


@dataclass
class TransformResult:
    worklogs: pd.DataFrame  # WORKLOG_COLUMNS; assignment_id NA = a new sync-created assignment
    skipped: pd.DataFrame  # SKIPPED_COLUMNS


def normalize_email(emails: pd.Series) -> pd.Series:
    """E-mails compare case- and whitespace-insensitively."""
    return emails.astype("string").str.strip().str.lower()


ID_COLUMNS = ("harvest_time_entry_id", "harvest_project_id", "harvest_user_id")


def entries_frame(rows: list[tuple]) -> pd.DataFrame:
    """Staged entries (tuples in ``ENTRY_COLUMNS`` order) as a frame whose ids are exact nullable integers: a
    record without an id must not turn the others' ids into floats (which round ids above 2**53)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(ENTRY_COLUMNS)
    return pd.DataFrame(
        {
            name: pd.array(values, dtype="Int64") if name in ID_COLUMNS else pd.Series(values, dtype="object")
            for name, values in zip(ENTRY_COLUMNS, columns, strict=True)
        }
    )


def empty_frame(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def _skip(entries: pd.DataFrame, reason: SkipReason, detail: pd.Series | str | None = None) -> pd.DataFrame:
    out = entries.reindex(columns=[c for c in SKIPPED_COLUMNS if c in entries.columns]).copy()
    out["reason"] = reason.value  # the plain code: database drivers may write an enum by its name
    out["detail"] = reason.text if detail is None else detail
    out = out.reindex(columns=SKIPPED_COLUMNS)
    return out.astype({c: "Int64" for c in ID_COLUMNS if c in out.columns})


MAX_HOURS_DECIMALS = 1000  # PostgreSQL's numeric holds 16383 decimal places; no clock needs more than a few
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")  # a JSON number


def _per_value(values: pd.Series, read, missing: object) -> np.ndarray:
    """``read`` applied once per distinct value (a run has few distinct dates and hours, however many entries)."""
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    read_values = np.array([read(u) for u in uniques] + [missing], dtype=object)
    return read_values[codes]  # code -1 (null) takes the last: missing


def _day(text: object) -> dt.date | None:
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def work_dates(spent_dates: pd.Series) -> pd.Series:
    """Each spent_date as a python ``date``, or None where it is not a real YYYY-MM-DD date exactly as written
    (ASCII digits, zero-padded, nothing around it: "2026-2-3", "20260203", "2026-02-30", " 2026-02-03" are not)."""
    return pd.Series(_per_value(spent_dates, _day, None), index=spent_dates.index, dtype="object")


def _hours(text: object) -> Decimal | None:
    try:
        value = Decimal(text) if isinstance(text, str) and _NUMBER.fullmatch(text) else None
    except (InvalidOperation, ValueError):
        return None
    if value is None or not value.is_finite() or not 0 <= value <= MAX_HOURS_PER_ENTRY:
        return None
    exponent = value.as_tuple().exponent  # an int for a finite value ("n", "N", "F" only for NaN and infinity)
    return value if isinstance(exponent, int) and exponent >= -MAX_HOURS_DECIMALS else None


def hours_values(hours: pd.Series) -> pd.Series:
    """Each entry's hours as an exact ``Decimal``, or None where they are not a number from 0 to 24 as sent: the
    extract stages a JSON number as its digits and anything else as its JSON text (``"2.5"`` with its quotes,
    ``true``), which is no number; NaN, infinity and more than ``MAX_HOURS_DECIMALS`` decimal places are refused."""
    return pd.Series(_per_value(hours, _hours, None), index=hours.index, dtype="object")


def validate_entries(
    entries: pd.DataFrame, linked_harvest_project_ids: set[int], harvest_user_ids: set[int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split staged entries into (valid, invalid). Valid ones gain ``work_date`` and ``hours_value``.

    A bad record never stops the run: it is kept aside with the reason and what was wrong.
    """
    entries = entries.reset_index(drop=True)
    if "unreadable" not in entries.columns:
        entries = entries.assign(unreadable=None)
    work_date = work_dates(entries["spent_date"])
    hours_value = hours_values(entries["hours"])

    unreadable = entries["unreadable"].notna()
    bad_date = ~unreadable & work_date.isna()
    bad_hours = ~unreadable & ~bad_date & hours_value.isna()
    usable = ~(unreadable | bad_date | bad_hours)
    unlinked = usable & ~entries["harvest_project_id"].isin(linked_harvest_project_ids)
    unknown_user = usable & ~unlinked & ~entries["harvest_user_id"].isin(harvest_user_ids)

    def said(column: str, rows: pd.Series) -> pd.Series:
        return entries.loc[rows, column].astype("string").fillna("missing")

    rejected = unreadable | bad_date | bad_hours | unlinked | unknown_user
    invalid = (
        pd.concat(
            [
                _skip(entries[unreadable], SkipReason.UNREADABLE_ENTRY, entries.loc[unreadable, "unreadable"]),
                _skip(
                    entries[bad_date],
                    SkipReason.INVALID_SPENT_DATE,
                    "spent_date " + said("spent_date", bad_date) + " is not a YYYY-MM-DD date",
                ),
                _skip(
                    entries[bad_hours],
                    SkipReason.INVALID_HOURS,
                    "hours " + said("hours", bad_hours) + f" is not a number from 0 to {MAX_HOURS_PER_ENTRY}",
                ),
                _skip(
                    entries[unlinked],
                    SkipReason.UNLINKED_HARVEST_PROJECT,
                    "Harvest project " + said("harvest_project_id", unlinked) + " is not linked to this project",
                ),
                _skip(
                    entries[unknown_user],
                    SkipReason.UNKNOWN_HARVEST_USER,
                    "Harvest user " + said("harvest_user_id", unknown_user) + " is not in Harvest's user list",
                ),
            ],
            ignore_index=True,
        )
        if rejected.any()
        else empty_frame(SKIPPED_COLUMNS)
    )

    valid = entries[~rejected].copy()
    valid["work_date"] = work_date[~rejected]
    valid["hours_value"] = hours_value[~rejected]
    return valid, invalid


def match_employees(harvest_users: pd.DataFrame, employees: pd.DataFrame) -> pd.DataFrame:
    """Harvest user id → Primetric employee id, by e-mail; managers and employees only.

    Two Primetric people with one e-mail: the lowest id wins, so the result is deterministic.
    """
    working = employees[employees["role"].isin(WORKING_ROLES)].copy()
    working["email_key"] = normalize_email(working["email"])
    working = working.sort_values("employee_id").drop_duplicates("email_key", keep="first")
    users = harvest_users[["harvest_user_id", "email"]].copy()
    users["email_key"] = normalize_email(users["email"])
    matched = users.merge(working[["email_key", "employee_id"]], on="email_key", how="left")
    return matched[["harvest_user_id", "employee_id"]].astype({"employee_id": "Int64"})


def attach_assignments(worklogs: pd.DataFrame, assignments: pd.DataFrame) -> pd.Series:
    """For each work log, its person's assignment covering the work date, else the nearest one.

    Returns assignment ids aligned with ``worklogs`` (NA where the person has no assignment).
    Ties go to the earlier assignment, so the choice never flips between runs.
    """
    if worklogs.empty:
        return pd.Series(pd.array([], dtype="Int64"), index=worklogs.index)
    left = worklogs[["employee_id", "work_date"]].copy()
    left["_row"] = range(len(left))
    cand = left.merge(
        assignments[["assignment_id", "employee_id", "start_date", "end_date"]], on="employee_id", how="inner"
    )
    if cand.empty:
        return pd.Series(pd.array([pd.NA] * len(worklogs), dtype="Int64"), index=worklogs.index)
    day = pd.to_datetime(cand["work_date"])
    start = pd.to_datetime(cand["start_date"])
    end = pd.to_datetime(cand["end_date"])  # NaT: open-ended
    before = (start - day).dt.days.clip(lower=0)
    after = (day - end).dt.days.clip(lower=0).fillna(0)
    cand["_distance"] = before + after
    cand["_start"] = start
    best = cand.sort_values(["_row", "_distance", "_start", "assignment_id"]).drop_duplicates("_row")
    result = pd.Series(pd.array([pd.NA] * len(worklogs), dtype="Int64"))
    result.iloc[best["_row"].to_numpy()] = best["assignment_id"].to_numpy()
    result.index = worklogs.index
    return result


def plan_work_logs(
    entries: pd.DataFrame,
    harvest_users: pd.DataFrame,
    employees: pd.DataFrame,
    assignments: pd.DataFrame,
    rules: ProjectRules,
    linked_harvest_project_ids: set[int],
) -> TransformResult:
    """Turn Harvest time entries into Primetric work logs, and say which were kept aside and why."""
    valid, invalid = validate_entries(entries, linked_harvest_project_ids, set(harvest_users["harvest_user_id"]))
    matches = match_employees(harvest_users, employees)
    valid = valid.merge(matches, on="harvest_user_id", how="left")

    unmatched = valid["employee_id"].isna()
    no_employee = _skip(valid[unmatched], SkipReason.NO_MATCHING_EMPLOYEE)
    matched = valid[~unmatched].copy()
    matched["employee_id"] = matched["employee_id"].astype("int64")
    matched["assignment_id"] = attach_assignments(matched, assignments)

    unassigned = matched["assignment_id"].isna()
    if rules.prevent_new_assignment_creation:
        not_assigned = _skip(
            matched[unassigned],
            SkipReason.NOT_ASSIGNED_TO_PROJECT,
        )
        matched = matched[~unassigned]
    else:
        not_assigned = empty_frame(SKIPPED_COLUMNS)

    worklogs = pd.DataFrame(
        {
            "harvest_time_entry_id": matched["harvest_time_entry_id"].astype("int64"),
            "employee_id": matched["employee_id"],
            "assignment_id": matched["assignment_id"],
            "work_date": matched["work_date"],
            "hours": matched["hours"].astype("string"),
            "description": matched["notes"],
            "harvest_project_id": matched["harvest_project_id"].astype("int64"),
            "harvest_user_id": matched["harvest_user_id"].astype("int64"),
        }
    ).reset_index(drop=True)
    frames = [f for f in (invalid, no_employee, not_assigned) if not f.empty]
    skipped = pd.concat(frames, ignore_index=True) if frames else empty_frame(SKIPPED_COLUMNS)
    return TransformResult(worklogs=worklogs, skipped=skipped)


def assignment_spans(work_spans: pd.DataFrame, rules: ProjectRules) -> pd.DataFrame:
    """Date range of each assignment the sync created, from its work logs' first and last date.

    ``work_spans``: ``assignment_id, first_work_date, last_work_date``. With trimming, one
    assignment spans the person's first to last synced work log (never split); without it, the
    project's dates, falling back to the work logs where the project has none.
    """
    spans = work_spans[["assignment_id"]].copy()
    if rules.trim_assignments_to_worklogs:
        spans["start_date"] = work_spans["first_work_date"]
        spans["end_date"] = work_spans["last_work_date"]
    else:
        # The project's dates, widened where a work log falls outside them (it must stay covered).
        start, end = rules.start_date, rules.end_date
        spans["start_date"] = [min(start, d) if start else d for d in work_spans["first_work_date"]]
        spans["end_date"] = [max(end, d) if end else None for d in work_spans["last_work_date"]]
    return spans.reset_index(drop=True)


def summarize_missing_teammates(skipped: pd.DataFrame, harvest_users: pd.DataFrame) -> pd.DataFrame:
    """One row per Harvest user whose hours could not land, with what a manager needs to add them."""
    columns = ["harvest_user_id", "email", "name", "reason", "entries", "hours", "first_work_date", "last_work_date"]
    missing = skipped[skipped["reason"].isin([r.value for r in MISSING_TEAMMATE_REASONS])]
    if missing.empty:
        return empty_frame(columns)
    missing = missing.assign(
        _hours=pd.to_numeric(missing["hours"], errors="coerce"),
        _date=pd.to_datetime(missing["spent_date"], errors="coerce").dt.date,
    )
    # A person has one reason; "not assigned" is the more specific one when both occur.
    reason = missing.groupby("harvest_user_id")["reason"].agg(
        lambda r: (
            SkipReason.NOT_ASSIGNED_TO_PROJECT.value
            if (r == SkipReason.NOT_ASSIGNED_TO_PROJECT).any()
            else SkipReason.NO_MATCHING_EMPLOYEE.value
        )
    )
    grouped = missing.groupby("harvest_user_id").agg(
        entries=("harvest_time_entry_id", "count"),
        hours=("_hours", "sum"),
        first_work_date=("_date", "min"),
        last_work_date=("_date", "max"),
    )
    grouped["reason"] = reason
    users = harvest_users.set_index("harvest_user_id")
    names = (users["first_name"].fillna("") + " " + users["last_name"].fillna("")).str.strip()
    grouped["email"] = users["email"].reindex(grouped.index)
    grouped["name"] = names.reindex(grouped.index)
    grouped["hours"] = grouped["hours"].round(2)
    out = grouped.reset_index()[columns]
    return out.sort_values(["hours", "harvest_user_id"], ascending=[False, True]).reset_index(drop=True)


def people_to_recheck(
    synced_people: pd.DataFrame,
    harvest_users: pd.DataFrame,
    employees: pd.DataFrame,
    assignments: pd.DataFrame,
    rules: ProjectRules,
) -> list[int]:
    """Harvest users whose synced work logs must be judged again although Harvest did not change them.

    ``synced_people``: ``harvest_user_id, employee_id`` pairs of the project's synced work logs. A
    Harvest (or Primetric) e-mail changed, so the match points elsewhere or nowhere; or, with
    "prevent new assignment creation", the person no longer has an assignment on the project.
    """
    if synced_people.empty:
        return []
    now = synced_people.merge(
        match_employees(harvest_users, employees), on="harvest_user_id", how="left", suffixes=("", "_now")
    )
    changed = now["employee_id_now"].isna() | (now["employee_id_now"] != now["employee_id"])
    if rules.prevent_new_assignment_creation:
        changed |= ~now["employee_id"].isin(set(assignments["employee_id"]))
    return sorted({int(u) for u in now.loc[changed.fillna(True), "harvest_user_id"]})
