"""Why a Harvest time entry was kept aside instead of becoming a work log: the one list.

Each reason has its code (stored in ``harvest_sync.skipped_entries.reason`` and, for missing teammates,
``primetric.missing_teammates.reason``; the migrations' CHECK constraints list the same codes and a test
compares them), the sentence a manager reads, and what to do about it. Transform, report, notices and
the Harvest sync page all read them from here.
"""

from __future__ import annotations

from enum import StrEnum


class SkipReason(StrEnum):
    text: str
    action: str

    def __new__(cls, code: str, text: str, action: str) -> SkipReason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.text = text
        member.action = action
        return member

    # A missing teammate: the entry is fine, the person cannot be matched on this project.
    NO_MATCHING_EMPLOYEE = (
        "no_matching_employee",
        "no Primetric manager or employee has the person's e-mail",
        "add them to Primetric as a Manager or Employee with this e-mail",
    )
    NOT_ASSIGNED_TO_PROJECT = (
        "not_assigned_to_project",
        "in Primetric but not assigned to the project, and the project prevents new assignment creation",
        "assign them to the project",
    )
    # A record the sync cannot use as sent. The work log of an earlier, readable version stays as it was.
    UNREADABLE_ENTRY = (
        "unreadable_entry",
        "the record's id, user, project or notes cannot be read as Harvest documents them",
        "look at the entry in Harvest (the detail shows what was sent); the next run reads it again",
    )
    INVALID_SPENT_DATE = (
        "invalid_spent_date",
        "spent_date missing or not a real YYYY-MM-DD date",
        "correct the entry's date in Harvest",
    )
    INVALID_HOURS = (
        "invalid_hours",
        "hours missing, not a number, negative or above 24",
        "correct the entry's hours in Harvest",
    )
    UNKNOWN_HARVEST_USER = (
        "unknown_harvest_user",
        "the entry's Harvest user is not in Harvest's user list",
        "check the person in Harvest (Team); the next run tries again",
    )
    UNLINKED_HARVEST_PROJECT = (
        "unlinked_harvest_project",
        "the entry's Harvest project is not linked to this Primetric project",
        "link the Harvest project, or move the entry in Harvest",
    )

    @property
    def is_missing_teammate(self) -> bool:
        """The person, not the record, is the problem: they are named in the missing-teammate report."""
        return self in MISSING_TEAMMATE_REASONS

    @property
    def removes_work_log(self) -> bool:
        """Whether an entry kept aside for this reason loses its synced work log. Only a missing teammate does
        (the person lost their match); a record we cannot use never deletes or changes what we hold for it."""
        return self.is_missing_teammate

    @classmethod
    def from_code(cls, code: str) -> SkipReason | None:
        """The reason of a stored code; None for a code this version does not know."""
        return next((reason for reason in cls if reason.value == code), None)

    @classmethod
    def describe(cls, code: str) -> str:
        """The manager-facing sentence of a stored code (an unknown code is shown as is)."""
        reason = cls.from_code(code)
        return reason.text if reason else code


MISSING_TEAMMATE_REASONS = (SkipReason.NO_MATCHING_EMPLOYEE, SkipReason.NOT_ASSIGNED_TO_PROJECT)
