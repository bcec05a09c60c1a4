"""The business rules, as plain functions: no Airflow, no database."""

import datetime as dt

import pandas as pd
import pytest

from primetric_harvest import transform as t
from primetric_harvest.plan import InvalidSyncRequest, plan_sync
from primetric_harvest.skip_reasons import SkipReason

pytestmark = pytest.mark.unit

D = dt.date


def entries(*rows):
    """rows: (id, harvest_project_id, harvest_user_id, spent_date, hours[, notes])"""
    out = []
    for r in rows:
        entry_id, hp, hu, day, hours = r[:5]
        out.append(
            {
                "harvest_time_entry_id": entry_id,
                "harvest_project_id": hp,
                "harvest_user_id": hu,
                "harvest_user_name": None,
                "spent_date": day,
                "hours": hours,
                "notes": r[5] if len(r) > 5 else None,
                "is_running": False,
                "updated_at": pd.Timestamp("2026-11-01T00:00:00Z"),
            }
        )
    return pd.DataFrame(out, columns=t.ENTRY_COLUMNS)


HARVEST_USERS = pd.DataFrame(
    [
        (10, "Bobby@Acme.test", "Bobby", "Tables"),
        (11, "sam@acme.test", "Sam", "Shaw"),
        (12, "nina@acme.test", "Nina", "New"),
        (13, "ada@acme.test", "Ada", "Admin"),
    ],
    columns=["harvest_user_id", "email", "first_name", "last_name"],
)
EMPLOYEES = pd.DataFrame(
    [
        (1, " bobby@ACME.test ", "Bobby", "employee"),
        (2, "sam@acme.test", "Sam", "manager"),
        (4, "ada@acme.test", "Ada", "administrator"),
    ],
    columns=["employee_id", "email", "name", "role"],
)
NO_ASSIGNMENTS = pd.DataFrame(columns=["assignment_id", "employee_id", "start_date", "end_date", "created_by_sync"])


def rules(**kw):
    return t.ProjectRules(project_id=1, start_date=D(2026, 1, 1), end_date=None, **kw)


def test_email_matching_is_case_and_whitespace_insensitive_and_skips_administrators():
    m = t.match_employees(HARVEST_USERS, EMPLOYEES).set_index("harvest_user_id")["employee_id"]
    assert m[10] == 1 and m[11] == 2
    assert pd.isna(m[12])  # nobody in Primetric
    assert pd.isna(m[13])  # an administrator: no work logs


def test_duplicate_primetric_emails_match_the_lowest_id():
    employees = pd.concat(
        [EMPLOYEES, pd.DataFrame([(0, "SAM@acme.test", "Sam 2", "employee")], columns=EMPLOYEES.columns)]
    )
    m = t.match_employees(HARVEST_USERS, employees).set_index("harvest_user_id")["employee_id"]
    assert m[11] == 0


def test_work_log_fields_come_from_the_entry():
    result = t.plan_work_logs(
        entries((100, 7, 10, "2026-02-01", "1.25", "fixed it")), HARVEST_USERS, EMPLOYEES, NO_ASSIGNMENTS, rules(), {7}
    )
    w = result.worklogs.iloc[0]
    assert (w.harvest_time_entry_id, w.employee_id, w.work_date, w.hours, w.description) == (
        100,
        1,
        D(2026, 2, 1),
        "1.25",
        "fixed it",
    )
    assert (w.harvest_project_id, w.harvest_user_id) == (7, 10)
    assert pd.isna(w.assignment_id)  # no assignment yet: a new one will be created


def test_prevent_creation_keeps_only_assigned_people_and_reports_the_rest():
    """Bobby and Sam log time in project A; only Bobby is assigned and prevent-creation is on."""
    assignments = pd.DataFrame([(50, 1, D(2026, 1, 1), None, False)], columns=NO_ASSIGNMENTS.columns)
    data = entries((1, 7, 10, "2026-02-01", "2"), (2, 7, 11, "2026-02-02", "3"), (3, 7, 11, "2026-02-03", "1"))
    result = t.plan_work_logs(
        data, HARVEST_USERS, EMPLOYEES, assignments, rules(prevent_new_assignment_creation=True), {7}
    )
    assert result.worklogs["harvest_time_entry_id"].tolist() == [1]
    assert result.worklogs["assignment_id"].tolist() == [50]
    assert set(result.skipped["harvest_time_entry_id"]) == {2, 3}
    assert set(result.skipped["reason"]) == {SkipReason.NOT_ASSIGNED_TO_PROJECT}
    missing = t.summarize_missing_teammates(result.skipped, HARVEST_USERS)
    assert missing[["harvest_user_id", "reason", "entries"]].values.tolist() == [
        [11, SkipReason.NOT_ASSIGNED_TO_PROJECT, 2]
    ]
    assert missing.loc[0, "hours"] == 4 and missing.loc[0, "email"] == "sam@acme.test"
    assert (missing.loc[0, "first_work_date"], missing.loc[0, "last_work_date"]) == (D(2026, 2, 2), D(2026, 2, 3))


def test_without_prevent_creation_unassigned_people_get_work_logs():
    data = entries((1, 7, 11, "2026-02-02", "3"))
    result = t.plan_work_logs(data, HARVEST_USERS, EMPLOYEES, NO_ASSIGNMENTS, rules(), {7})
    assert result.worklogs["employee_id"].tolist() == [2] and result.skipped.empty


def test_unknown_person_is_a_missing_teammate():
    result = t.plan_work_logs(
        entries((1, 7, 12, "2026-02-02", "3")), HARVEST_USERS, EMPLOYEES, NO_ASSIGNMENTS, rules(), {7}
    )
    assert result.worklogs.empty
    missing = t.summarize_missing_teammates(result.skipped, HARVEST_USERS)
    assert missing[["harvest_user_id", "name", "reason"]].values.tolist() == [
        [12, "Nina New", SkipReason.NO_MATCHING_EMPLOYEE]
    ]


def test_work_logs_attach_to_the_covering_assignment_else_the_nearest():
    assignments = pd.DataFrame(
        [(50, 1, D(2026, 1, 1), D(2026, 1, 31), False), (51, 1, D(2026, 3, 1), D(2026, 3, 31), False)],
        columns=NO_ASSIGNMENTS.columns,
    )
    data = entries(
        (1, 7, 10, "2026-01-15", "1"),
        (2, 7, 10, "2026-03-05", "1"),
        (3, 7, 10, "2026-02-03", "1"),
        (4, 7, 10, "2026-02-25", "1"),
        (5, 7, 10, "2027-05-01", "1"),
    )
    result = t.plan_work_logs(data, HARVEST_USERS, EMPLOYEES, assignments, rules(), {7})
    got = dict(zip(result.worklogs["harvest_time_entry_id"], result.worklogs["assignment_id"], strict=True))
    assert got == {1: 50, 2: 51, 3: 50, 4: 51, 5: 51}


def test_open_ended_assignment_covers_everything_after_its_start():
    assignments = pd.DataFrame([(50, 1, D(2026, 1, 1), None, False)], columns=NO_ASSIGNMENTS.columns)
    result = t.plan_work_logs(
        entries((1, 7, 10, "2030-01-15", "1")), HARVEST_USERS, EMPLOYEES, assignments, rules(), {7}
    )
    assert result.worklogs["assignment_id"].tolist() == [50]


def test_trim_spans_first_to_last_work_log_in_one_assignment():
    """Bobby logs Feb 1 and Mar 19 with trim on → one assignment Feb 1–Mar 19."""
    spans = t.assignment_spans(
        pd.DataFrame(
            [(900, D(2026, 2, 1), D(2026, 3, 19))], columns=["assignment_id", "first_work_date", "last_work_date"]
        ),
        rules(trim_assignments_to_worklogs=True),
    )
    assert spans.values.tolist() == [[900, D(2026, 2, 1), D(2026, 3, 19)]]


def test_without_trim_a_sync_assignment_spans_the_project():
    work = pd.DataFrame(
        [(900, D(2026, 2, 1), D(2026, 3, 19))], columns=["assignment_id", "first_work_date", "last_work_date"]
    )
    bounded = t.ProjectRules(project_id=1, start_date=D(2026, 1, 1), end_date=D(2026, 12, 31))
    assert t.assignment_spans(work, bounded).values.tolist() == [[900, D(2026, 1, 1), D(2026, 12, 31)]]
    open_ended = t.ProjectRules(project_id=1, start_date=D(2026, 1, 1), end_date=None)
    assert t.assignment_spans(work, open_ended).values.tolist() == [[900, D(2026, 1, 1), None]]
    # A work log outside the project's dates stays covered.
    no_dates = t.ProjectRules(project_id=1, start_date=D(2026, 3, 1), end_date=D(2026, 3, 10))
    assert t.assignment_spans(work, no_dates).values.tolist() == [[900, D(2026, 2, 1), D(2026, 3, 19)]]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ((1, 7, 10, "2026-02-30", "1"), SkipReason.INVALID_SPENT_DATE),
        ((1, 7, 10, None, "1"), SkipReason.INVALID_SPENT_DATE),
        ((1, 7, 10, "2026-02-01", None), SkipReason.INVALID_HOURS),
        ((1, 7, 10, "2026-02-01", "-1"), SkipReason.INVALID_HOURS),
        ((1, 7, 10, "2026-02-01", "24.5"), SkipReason.INVALID_HOURS),
        ((1, 8, 10, "2026-02-01", "1"), SkipReason.UNLINKED_HARVEST_PROJECT),
        ((1, 7, 99, "2026-02-01", "1"), SkipReason.UNKNOWN_HARVEST_USER),
    ],
)
def test_bad_records_are_kept_aside_with_their_reason(row, reason):
    data = entries(row, (2, 7, 10, "2026-02-01", "2"))
    result = t.plan_work_logs(data, HARVEST_USERS, EMPLOYEES, NO_ASSIGNMENTS, rules(), {7})
    assert result.worklogs["harvest_time_entry_id"].tolist() == [2]  # the run goes on
    assert result.skipped[["harvest_time_entry_id", "reason"]].values.tolist() == [[1, reason]]
    assert result.skipped.loc[0, "detail"]


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "2026-02-30"])
def test_plan_rejects_a_since_that_is_not_a_date(bad):
    with pytest.raises(InvalidSyncRequest, match="YYYY-MM-DD"):
        plan_sync(since=bad, sync_since=None, project_start=None, high_water_mark=None)
