"""How one Harvest record, as JSON gave it, becomes a staged row: every value kept as sent, nothing raised.

JSON carries far more than PostgreSQL stores: integers beyond bigint, strings holding U+0000 or a lone
surrogate (valid JSON escapes, not storable in a ``text`` column), objects where a number belongs. Reading a
record never fails: what cannot be read is said in the row (``unreadable``) and the transform keeps the entry
aside with that as its detail; text PostgreSQL cannot hold is stored without the offending characters and
the row says which were removed (``removed_characters``). A value of an unexpected type is staged as its JSON
text (``"2.5"`` with its quotes for hours sent as a string), so the kept-aside record shows what Harvest sent.

Plain Python, no pandas or database: the extract calls these for each record of each page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
# U+0000 (text columns cannot hold it) and the surrogate code points (a JSON escape like \ud800 with no partner
# decodes to one; UTF-8 cannot encode it). A well-formed surrogate pair decodes to one astral character.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS = re.compile(r"-?[0-9]{1,19}")
SHOWN_CHARS = 80  # how much of a value a detail repeats

_MISSING = object()


def storable(text: str) -> tuple[str, str | None]:
    """``text`` without the characters PostgreSQL cannot store, and a note of what was removed (None: nothing)."""
    found = _UNSTORABLE.findall(text)
    if not found:
        return text, None
    counts: dict[str, int] = {}
    for char in found:
        code = f"U+{ord(char):04X}"
        counts[code] = counts.get(code, 0) + 1
    return _UNSTORABLE.sub("", text), ", ".join(f"{n} × {code}" for code, n in sorted(counts.items()))


def json_text(value: Any) -> str:
    """A JSON value as JSON text, as Harvest sent it and storable: U+0000 and lone surrogates as their escapes."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)  # escapes U+0000-U+001F
    except (TypeError, ValueError, RecursionError):  # an integer of more digits than Python prints
        return f"<{kind(value)}>"
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def shown(value: Any) -> str:
    """A value as a detail repeats it: its JSON text, cut short."""
    text = json_text(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def kind(value: Any) -> str:
    """The JSON kind of a value, in words."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def bigint(value: Any) -> int | None:
    """An integer PostgreSQL's bigint holds, or None."""
    if isinstance(value, int) and not isinstance(value, bool) and BIGINT_MIN <= value <= BIGINT_MAX:
        return value
    return None


def _id_of(value: Any, what: str) -> tuple[int | None, str | None]:
    """(the id, None) for an integer id; (the id it names, the problem) for "123" or 123.0; (None, problem)."""
    if value is _MISSING or value is None:
        return None, f"{what} is {kind(value)}"
    number = bigint(value)
    if number is not None:
        return number, None
    named = None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        named = bigint(int(value))
    elif isinstance(value, float) and value.is_integer():
        named = bigint(int(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return None, f"{what} {shown(value)} is beyond a 64-bit integer"
    return named, f"{what} is {kind(value)} ({shown(value)}), not an integer"


def _nested_id(record: dict, key: str) -> tuple[int | None, str | None]:
    """``record[key]["id"]``, e.g. the entry's user or project."""
    owner = record.get(key, _MISSING)
    if not isinstance(owner, dict):
        return None, f"{key} is {kind(owner)}" + ("" if owner is _MISSING or owner is None else f" ({shown(owner)})")
    return _id_of(owner.get("id", _MISSING), f"{key}.id")


def text_of(value: Any) -> tuple[str | None, str | None]:
    """A text field: (storable text, removed-characters note). Null stays null; another kind becomes its JSON."""
    if value is None or value is _MISSING:
        return None, None
    return storable(value) if isinstance(value, str) else (json_text(value), None)


def number_text(value: Any) -> str | None:
    """A number field as text: a JSON number as its digits, anything else as its JSON text (``"2.5"``, ``true``)."""
    if value is None or value is _MISSING:
        return None
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than Python prints (never a valid number of hours anyway)
            return "<a number of more than 4300 digits>"
    return json_text(value)


def timestamp(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp as UTC (Harvest's are UTC; one without a zone is read as UTC); None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
        return (stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


# The staged row of a time entry: include/sql/staging.sql `copy_entries` lists the same columns in this order.
ENTRY_ROW = (
    "harvest_time_entry_id",
    "harvest_project_id",
    "harvest_user_id",
    "harvest_user_name",
    "spent_date",
    "hours",
    "notes",
    "is_running",
    "updated_at",
    "unreadable",  # why the record cannot be used as sent (see entry_row), else NA
    "removed_characters",  # what its text lost because PostgreSQL cannot store it, else NA
)


def entry_row(entry: Any) -> tuple:
    """One staged row per record of a time-entry listing, whatever the record holds.

    ``unreadable`` says why the entry cannot be used as sent (its id, user, project or notes): the transform
    keeps it aside. The id is kept whenever the record names one (``"123"`` names entry 123), so that an
    unreadable version of an entry we hold is recognised as that entry; None when no entry can be told.
    """
    if not isinstance(entry, dict):
        not_an_entry = f"the record is {kind(entry)} ({shown(entry)}), not a time entry object"
        return (None, None, None, None, None, None, None, None, None, not_an_entry, None)
    entry_id, id_problem = _id_of(entry.get("id", _MISSING), "id")
    project_id, project_problem = _nested_id(entry, "project")
    user_id, user_problem = _nested_id(entry, "user")
    problems = [p for p in (id_problem, project_problem, user_problem) if p]
    raw_notes = entry.get("notes")
    if raw_notes is not None and not isinstance(raw_notes, str):
        problems.append(f"notes is {kind(raw_notes)} ({shown(raw_notes)}), not text or null")
        notes, removed_notes = None, None
    else:
        notes, removed_notes = text_of(raw_notes)
    user = entry.get("user")
    user_name = text_of(user.get("name"))[0] if isinstance(user, dict) else None
    spent = entry.get("spent_date")
    # A date is text as sent; anything else (or text PostgreSQL cannot hold) as its JSON text, which no rule
    # reads as a date: the entry is kept aside, its detail showing the value with its escapes.
    plain = isinstance(spent, str) and storable(spent)[1] is None
    spent_text = None if spent is None else (spent if plain else json_text(spent))
    running = entry.get("is_running")
    return (
        entry_id,
        project_id,
        user_id,
        user_name,
        spent_text,
        number_text(entry.get("hours")),
        notes,
        running if isinstance(running, bool) else None,
        timestamp(entry.get("updated_at")),
        "; ".join(problems) or None,
        f"notes: {removed_notes} removed (PostgreSQL cannot store them)" if removed_notes else None,
    )


def user_row(user: Any) -> tuple | None:
    """The staged row of a Harvest user (``harvest_user_id, email, first_name, last_name, is_active``); None for
    a record with no integer id, which no entry can refer to.

    An e-mail that is not text, or holds characters PostgreSQL cannot store, is not the person's e-mail as
    typed: it is staged as null and matches nobody (the person shows as a missing teammate without e-mail).
    Names are stored without such characters.
    """
    if not isinstance(user, dict):
        return None
    user_id = bigint(user.get("id"))
    if user_id is None:
        return None
    email = user.get("email")
    if not isinstance(email, str) or storable(email)[1]:
        email = None
    active = user.get("is_active")
    return (
        user_id,
        email,
        text_of(user.get("first_name"))[0],
        text_of(user.get("last_name"))[0],
        active if isinstance(active, bool) else None,
    )
