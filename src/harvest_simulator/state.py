"""In-memory data of the Harvest simulator.

Time entries are stored column by column in numpy arrays (with spare capacity so that
appends are amortised O(1)); nothing is kept as one Python object per entry except the
``notes`` column, whose generated values are shared references to a few template strings.
JSON is rendered by the server only for the page being served.

Every mutation takes ``state.lock`` and bumps ``state.version``; the server reads under the
same lock, and caches the sorted, filtered index of a query per ``(query, version)``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)
DEFAULT_TIMEZONE = "Eastern Time (US & Canada)"

_EPOCH_DAY = np.datetime64("1970-01-01", "D")
_NAT_S = np.datetime64("NaT", "s")

# Column name -> numpy dtype of the columnar time-entry store.
ENTRY_COLUMNS: dict[str, Any] = {
    "id": np.int64,
    "spent_date": "datetime64[D]",
    "user_id": np.int64,
    "project_id": np.int64,
    "task_id": np.int64,
    "client_id": np.int64,
    "hours": np.float64,
    "notes": object,
    "is_running": np.bool_,
    "is_locked": np.bool_,
    "billable": np.bool_,
    "created_at": "datetime64[s]",
    "updated_at": "datetime64[s]",
    "timer_started_at": "datetime64[s]",
}

ENTRY_UPDATABLE = frozenset(
    {
        "spent_date",
        "hours",
        "notes",
        "user_id",
        "project_id",
        "task_id",
        "is_running",
        "is_locked",
        "billable",
        "created_at",
        "updated_at",
        "timer_started_at",
    }
)
USER_UPDATABLE = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "is_active",
        "timezone",
        "access_roles",
        "created_at",
        "updated_at",
    }
)
PROJECT_UPDATABLE = frozenset(
    {
        "name",
        "code",
        "client_id",
        "is_active",
        "starts_on",
        "ends_on",
        "created_at",
        "updated_at",
    }
)

DEFAULT_TASKS: dict[int, str] = {
    9000001: "Development",
    9000002: "Design",
    9000003: "Project Management",
    9000004: "Meetings",
    9000005: "Testing",
}

# fmt: off
_FIRST_NAMES = [
    "Anna", "Bartosz", "Carla", "Dawid", "Ewa", "Filip", "Greta", "Henryk", "Irena",
    "Jakub", "Kasia", "Lukas", "Maria", "Norbert", "Olga", "Piotr", "Quinn", "Roksana",
    "Szymon", "Tina", "Urszula", "Victor", "Wanda", "Xavier", "Yvonne", "Zofia",
]
_LAST_NAMES = [
    "Nowak", "Kowalski", "Smith", "Jones", "Wisniewska", "Garcia", "Muller", "Dubois",
    "Rossi", "Novak", "Brown", "Lewandowski", "Kaminska", "Schmidt", "Silva", "Taylor",
    "Zielinski", "Wojcik", "Martin", "Larsen",
]
_TIMEZONES = [
    "Eastern Time (US & Canada)", "Pacific Time (US & Canada)", "London", "Warsaw",
    "Berlin", "UTC",
]
_CLIENT_NAMES = [
    "Acme Corp", "Globex", "Initech", "Umbrella", "Stark Industries",
    "Wayne Enterprises", "Hooli", "Vandelay Industries",
]
_PROJECT_WORDS = [
    "Website", "Mobile App", "Data Platform", "Migration", "Support", "Audit",
    "Redesign", "Integration", "Analytics", "Onboarding",
]
_NOTES = [
    "Code review", "Sprint planning", "Bug fixing", "Client call", "Implementation",
    "Documentation", "Deployment", "Refactoring", "Research", "Daily stand-up",
    "Pairing session", "Testing release candidate", "Zażółć gęślą jaźń: UTF-8 notes",
    'Notes with "quotes", commas, and a\nnewline',
]
# fmt: on


# --------------------------------------------------------------------------- conversions
def to_utc_datetime(value: Any) -> datetime:
    """Parse a datetime / ISO-8601 string / pandas Timestamp into an aware UTC datetime."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value).to_pydatetime()
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            value = datetime.fromisoformat(text)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, datetime.min.time())
    if not isinstance(value, datetime):
        raise TypeError(f"not a datetime: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_dt64s(value: Any, *, ceil: bool = False) -> np.datetime64:
    """Datetime-like -> numpy datetime64[s] (UTC, naive). None/NaT -> NaT.

    With ``ceil=True`` a fractional second is rounded up (used for ``updated_since``, so
    that ``stored_second >= ceil(since)`` is the same as ``stored_second >= since``).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _NAT_S
    if isinstance(value, np.datetime64) and np.isnat(value):
        return _NAT_S
    dt = to_utc_datetime(value)
    secs = int(dt.replace(microsecond=0).timestamp())
    if ceil and dt.microsecond:
        secs += 1
    return np.datetime64(secs, "s")


def to_day(value: Any) -> np.datetime64:
    """Date-like ('YYYY-MM-DD', date, datetime, datetime64) -> numpy datetime64[D]."""
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]")
    if isinstance(value, pd.Timestamp):
        return np.datetime64(value.date(), "D")
    if isinstance(value, datetime):
        return np.datetime64(value.date(), "D")
    if isinstance(value, date):
        return np.datetime64(value, "D")
    if isinstance(value, str):
        return np.datetime64(date.fromisoformat(value.strip()[:10]), "D")
    raise TypeError(f"not a date: {value!r}")


def dt64s_to_py(value: np.datetime64) -> datetime | None:
    if np.isnat(value):
        return None
    return datetime.fromtimestamp(int(value.astype(np.int64)), tz=UTC)


def iso_z(values: np.ndarray) -> list[str | None]:
    """datetime64[s] array -> list of 'YYYY-MM-DDTHH:MM:SSZ' (None for NaT)."""
    strings = np.datetime_as_string(values, unit="s").tolist()
    return [None if s == "NaT" else s + "Z" for s in strings]


def _norm_hours(hours: Any) -> float:
    if hours is None:
        return float("nan")
    h = float(hours)
    return h if math.isnan(h) else round(h, 2)


def _optional_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _ts(dt: datetime) -> pd.Timestamp:
    return pd.Timestamp(to_utc_datetime(dt)).floor("s")


# --------------------------------------------------------------------------- the state
class SimulatorState:
    """All data served by a :class:`~harvest_simulator.HarvestSimulator` (thread-safe)."""

    QUERY_CACHE_SIZE = 8

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.version = 0
        self._meta_version = 0  # bumps on users/projects/clients/tasks changes
        self._order_version = 0  # bumps when rows, ids or spent_dates change (sort order)
        self._now: datetime | None = None
        self._last_stamp = np.datetime64(0, "s")

        self._users = pd.DataFrame(
            {
                "id": pd.Series([], dtype="int64"),
                "first_name": pd.Series([], dtype=object),
                "last_name": pd.Series([], dtype=object),
                "email": pd.Series([], dtype=object),
                "is_active": pd.Series([], dtype=bool),
                "timezone": pd.Series([], dtype=object),
                "access_roles": pd.Series([], dtype=object),
                "created_at": pd.Series([], dtype="datetime64[s, UTC]"),
                "updated_at": pd.Series([], dtype="datetime64[s, UTC]"),
            }
        )
        self._projects = pd.DataFrame(
            {
                "id": pd.Series([], dtype="int64"),
                "name": pd.Series([], dtype=object),
                "code": pd.Series([], dtype=object),
                "client_id": pd.Series([], dtype="int64"),
                "is_active": pd.Series([], dtype=bool),
                "starts_on": pd.Series([], dtype=object),
                "ends_on": pd.Series([], dtype=object),
                "created_at": pd.Series([], dtype="datetime64[s, UTC]"),
                "updated_at": pd.Series([], dtype="datetime64[s, UTC]"),
            }
        )
        self.clients: dict[int, str] = {}
        self.tasks: dict[int, str] = dict(DEFAULT_TASKS)

        # Columnar time entries: arrays of length `capacity`, first `_n` rows are live.
        self._cols: dict[str, np.ndarray] = {k: np.empty(0, dtype=t) for k, t in ENTRY_COLUMNS.items()}
        self._n = 0
        self._ids_sorted = True
        self._max_id = 2_000_000_000

        self._order_cache: tuple[int, np.ndarray] | None = None
        self._query_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lookup_cache: tuple[int, dict[str, dict]] | None = None

    # ------------------------------------------------------------------ clock
    @property
    def now(self) -> datetime:
        """Current simulated time (aware UTC). Real UTC time unless set by ``state.now = ...``."""
        if self._now is not None:
            return self._now
        return datetime.now(UTC)

    @now.setter
    def now(self, value: Any) -> None:
        self._now = None if value is None else to_utc_datetime(value)

    def advance(self, seconds: float) -> datetime:
        """Freeze the clock (if running on real time) and move it forward by ``seconds``."""
        with self.lock:
            self._now = self.now + timedelta(seconds=seconds)
            return self._now

    def _stamp(self) -> np.datetime64:
        """Timestamp for a mutation: the set clock exactly, else real time never going backwards."""
        t = to_dt64s(self.now)
        if self._now is None and t < self._last_stamp:
            t = self._last_stamp
        self._last_stamp = max(self._last_stamp, t)
        return t

    def _bump(self, meta: bool = False, order: bool = False) -> None:
        self.version += 1
        if meta:
            self._meta_version += 1
        if order:
            self._order_version += 1

    # ------------------------------------------------------------------ clients / tasks
    def add_client(self, name: str | None = None, id: int | None = None) -> int:
        with self.lock:
            cid = int(id) if id is not None else max(self.clients, default=5000000) + 1
            self.clients[cid] = name or f"Client {cid}"
            self._bump(meta=True)
            return cid

    def add_task(self, name: str, id: int | None = None) -> int:
        with self.lock:
            tid = int(id) if id is not None else max(self.tasks, default=9000000) + 1
            self.tasks[tid] = name
            self._bump(meta=True)
            return tid

    def _default_client_id(self) -> int:
        if not self.clients:
            return self.add_client("Example Client")
        return next(iter(self.clients))

    # ------------------------------------------------------------------ users
    def add_user(
        self,
        first_name: str,
        last_name: str,
        email: str | None = None,
        *,
        id: int | None = None,
        is_active: bool = True,
        timezone: str = DEFAULT_TIMEZONE,
        access_roles: Sequence[str] | None = None,
        created_at: Any = None,
        updated_at: Any = None,
    ) -> dict:
        with self.lock:
            ids = self._users["id"]
            uid = int(id) if id is not None else int(ids.max()) + 1 if len(ids) else 3000001
            if (ids == uid).any():
                raise ValueError(f"user {uid} already exists")
            stamp = self._stamp()
            created = to_dt64s(created_at) if created_at is not None else stamp
            updated = to_dt64s(updated_at) if updated_at is not None else stamp
            row = pd.DataFrame(
                {
                    "id": pd.Series([uid], dtype="int64"),
                    "first_name": pd.Series([first_name], dtype=object),
                    "last_name": pd.Series([last_name], dtype=object),
                    "email": pd.Series(
                        [email or f"{first_name}.{last_name}{uid}@example.com".lower()],
                        dtype=object,
                    ),
                    "is_active": pd.Series([bool(is_active)], dtype=bool),
                    "timezone": pd.Series([timezone], dtype=object),
                    "access_roles": pd.Series([list(access_roles or ["member"])], dtype=object),
                    "created_at": pd.Series([created], dtype="datetime64[s]").dt.tz_localize("UTC"),
                    "updated_at": pd.Series([updated], dtype="datetime64[s]").dt.tz_localize("UTC"),
                }
            )
            self._users = row if self._users.empty else pd.concat([self._users, row], ignore_index=True)
            self._bump(meta=True)
            return self.get_user(uid)

    def _user_row(self, user_id: int) -> int:
        hits = np.flatnonzero(self._users["id"].to_numpy() == int(user_id))
        if not len(hits):
            raise KeyError(f"user {user_id} not found")
        return int(hits[0])

    def get_user(self, user_id: int) -> dict:
        with self.lock:
            row = self._users.iloc[self._user_row(user_id)]
            out = row.to_dict()
            out["id"] = int(out["id"])
            out["is_active"] = bool(out["is_active"])
            out["access_roles"] = list(out["access_roles"])
            out["created_at"] = out["created_at"].to_pydatetime()
            out["updated_at"] = out["updated_at"].to_pydatetime()
            return out

    def update_user(self, id: int, **fields: Any) -> dict:
        unknown = set(fields) - USER_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update user fields: {sorted(unknown)}")
        with self.lock:
            i = self._user_row(id)
            df = self._users.copy()
            for key, value in fields.items():
                if key in ("created_at", "updated_at"):
                    df.loc[i, key] = _ts(value)
                elif key == "access_roles":
                    roles = df["access_roles"].tolist()
                    roles[i] = list(value)
                    df["access_roles"] = pd.Series(roles, dtype=object, index=df.index)
                elif key == "is_active":
                    df.loc[i, key] = bool(value)
                else:
                    df.loc[i, key] = value
            if "updated_at" not in fields:
                df.loc[i, "updated_at"] = pd.Timestamp(dt64s_to_py(self._stamp()))
            self._users = df
            self._bump(meta=True)
            return self.get_user(id)

    def users_df(self) -> pd.DataFrame:
        """Copy of the users table (sorted by id)."""
        with self.lock:
            return self._users.sort_values("id", kind="stable").reset_index(drop=True).copy()

    def default_admin_id(self) -> int | None:
        """Id of the first active administrator (else the first user, else None)."""
        with self.lock:
            df = self._users.sort_values("id")
            for uid, roles, active in zip(df["id"], df["access_roles"], df["is_active"], strict=True):
                if active and "administrator" in roles:
                    return int(uid)
            return int(df["id"].iloc[0]) if len(df) else None

    # ------------------------------------------------------------------ projects
    def add_project(
        self,
        id: int | None = None,
        name: str | None = None,
        code: str | None = None,
        client_id: int | None = None,
        is_active: bool = True,
        starts_on: Any = None,
        ends_on: Any = None,
        *,
        client_name: str | None = None,
        created_at: Any = None,
        updated_at: Any = None,
    ) -> dict:
        with self.lock:
            ids = self._projects["id"]
            pid = int(id) if id is not None else int(ids.max()) + 1 if len(ids) else 1001
            if (ids == pid).any():
                raise ValueError(f"project {pid} already exists")
            if client_id is None:
                cid = self._default_client_id()
            else:
                cid = int(client_id)
                if cid not in self.clients:
                    self.add_client(client_name, id=cid)
            stamp = self._stamp()
            created = to_dt64s(created_at) if created_at is not None else stamp
            updated = to_dt64s(updated_at) if updated_at is not None else stamp
            row = pd.DataFrame(
                {
                    "id": pd.Series([pid], dtype="int64"),
                    "name": pd.Series([name or f"Project {pid}"], dtype=object),
                    "code": pd.Series([code if code is not None else f"P{pid}"], dtype=object),
                    "client_id": pd.Series([cid], dtype="int64"),
                    "is_active": pd.Series([bool(is_active)], dtype=bool),
                    "starts_on": pd.Series([_optional_date(starts_on)], dtype=object),
                    "ends_on": pd.Series([_optional_date(ends_on)], dtype=object),
                    "created_at": pd.Series([created], dtype="datetime64[s]").dt.tz_localize("UTC"),
                    "updated_at": pd.Series([updated], dtype="datetime64[s]").dt.tz_localize("UTC"),
                }
            )
            self._projects = row if self._projects.empty else pd.concat([self._projects, row], ignore_index=True)
            self._bump(meta=True)
            return self._project_dict(pid)

    def _project_row(self, project_id: int) -> int:
        hits = np.flatnonzero(self._projects["id"].to_numpy() == int(project_id))
        if not len(hits):
            raise KeyError(f"project {project_id} not found")
        return int(hits[0])

    def _project_dict(self, project_id: int) -> dict:
        out = self._projects.iloc[self._project_row(project_id)].to_dict()
        out["id"] = int(out["id"])
        out["client_id"] = int(out["client_id"])
        out["is_active"] = bool(out["is_active"])
        out["created_at"] = out["created_at"].to_pydatetime()
        out["updated_at"] = out["updated_at"].to_pydatetime()
        return out

    def update_project(self, id: int, **fields: Any) -> dict:
        unknown = set(fields) - PROJECT_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update project fields: {sorted(unknown)}")
        with self.lock:
            i = self._project_row(id)
            df = self._projects.copy()
            for key, value in fields.items():
                if key in ("created_at", "updated_at"):
                    df.loc[i, key] = _ts(value)
                elif key in ("starts_on", "ends_on"):
                    col = df[key].tolist()
                    col[i] = _optional_date(value)
                    df[key] = pd.Series(col, dtype=object, index=df.index)
                elif key == "client_id":
                    if int(value) not in self.clients:
                        self.add_client(None, id=int(value))
                    df.loc[i, key] = int(value)
                elif key == "is_active":
                    df.loc[i, key] = bool(value)
                else:
                    df.loc[i, key] = value
            if "updated_at" not in fields:
                df.loc[i, "updated_at"] = pd.Timestamp(dt64s_to_py(self._stamp()))
            self._projects = df
            if "client_id" in fields:  # entries carry the client of their project
                n = self._n
                mask = self._cols["project_id"][:n] == int(id)
                self._cols["client_id"][:n][mask] = int(fields["client_id"])
            self._bump(meta=True)
            return self._project_dict(id)

    def projects_df(self) -> pd.DataFrame:
        with self.lock:
            return self._projects.sort_values("id", kind="stable").reset_index(drop=True).copy()

    def _client_of_project(self, project_id: int) -> int:
        try:
            return int(self._projects["client_id"].iloc[self._project_row(project_id)])
        except KeyError:
            return int(self.add_project(int(project_id))["client_id"])

    # ------------------------------------------------------------------ entries: storage
    @property
    def n_entries(self) -> int:
        return self._n

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        cap = len(self._cols["id"])
        if need <= cap:
            return
        new_cap = max(need, int(cap * 1.25) + 1024)
        for key, arr in self._cols.items():
            grown = np.empty(new_cap, dtype=arr.dtype)
            grown[: self._n] = arr[: self._n]
            self._cols[key] = grown

    def _row_of(self, entry_id: int) -> int:
        ids = self._cols["id"][: self._n]
        entry_id = int(entry_id)
        if self._ids_sorted:
            i = int(np.searchsorted(ids, entry_id))
            if i < len(ids) and ids[i] == entry_id:
                return i
        else:
            hits = np.flatnonzero(ids == entry_id)
            if len(hits):
                return int(hits[0])
        raise KeyError(f"time entry {entry_id} not found")

    def has_entry(self, entry_id: int) -> bool:
        with self.lock:
            try:
                self._row_of(entry_id)
                return True
            except KeyError:
                return False

    def column(self, name: str) -> np.ndarray:
        """Read-only view of one live entry column (hold ``state.lock`` while using it)."""
        view = self._cols[name][: self._n]
        view = view.view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ entries: API
    def add_entry(
        self,
        user_id: int,
        project_id: int,
        spent_date: Any,
        hours: Any,
        notes: str | None = None,
        is_running: bool = False,
        id: int | None = None,
        *,
        task_id: int | None = None,
        billable: bool = True,
        is_locked: bool = False,
        created_at: Any = None,
        updated_at: Any = None,
    ) -> int:
        """Append a time entry; created_at/updated_at default to ``now``. Returns its id.

        An unknown ``project_id`` is registered as a project (with the default client);
        an unknown ``user_id`` is allowed (rendered as "User <id>").
        """
        with self.lock:
            if id is None:
                eid = self._max_id + 1
            else:
                eid = int(id)
                if self._n and self.has_entry(eid):
                    raise ValueError(f"time entry {eid} already exists")
            client_id = self._client_of_project(int(project_id))
            stamp = self._stamp()
            self._reserve(1)
            i = self._n
            c = self._cols
            c["id"][i] = eid
            c["spent_date"][i] = to_day(spent_date)
            c["user_id"][i] = int(user_id)
            c["project_id"][i] = int(project_id)
            c["task_id"][i] = int(task_id) if task_id is not None else next(iter(self.tasks))
            c["client_id"][i] = client_id
            c["hours"][i] = _norm_hours(hours)
            c["notes"][i] = notes
            c["is_running"][i] = bool(is_running)
            c["is_locked"][i] = bool(is_locked)
            c["billable"][i] = bool(billable)
            c["created_at"][i] = to_dt64s(created_at) if created_at is not None else stamp
            c["updated_at"][i] = to_dt64s(updated_at) if updated_at is not None else stamp
            c["timer_started_at"][i] = stamp if is_running else _NAT_S
            if i and eid <= int(c["id"][i - 1]):
                self._ids_sorted = False
            self._max_id = max(self._max_id, eid)
            self._n += 1
            self._bump(order=True)
            return eid

    def update_entry(self, id: int, **fields: Any) -> None:
        """Change fields of an entry; ``updated_at`` becomes ``now`` unless given explicitly."""
        unknown = set(fields) - ENTRY_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update time entry fields: {sorted(unknown)}")
        with self.lock:
            i = self._row_of(id)
            c = self._cols
            stamp = self._stamp()
            for key, value in fields.items():
                if key == "spent_date":
                    c[key][i] = to_day(value)
                elif key == "hours":
                    c[key][i] = _norm_hours(value)
                elif key == "notes":
                    c[key][i] = value
                elif key in ("user_id", "task_id"):
                    c[key][i] = int(value)
                elif key == "project_id":
                    c["client_id"][i] = self._client_of_project(int(value))
                    c[key][i] = int(value)
                elif key == "is_running":
                    running = bool(value)
                    if running and not c[key][i] and "timer_started_at" not in fields:
                        c["timer_started_at"][i] = stamp
                    elif not running and "timer_started_at" not in fields:
                        c["timer_started_at"][i] = _NAT_S
                    c[key][i] = running
                elif key in ("is_locked", "billable"):
                    c[key][i] = bool(value)
                else:  # created_at / updated_at / timer_started_at
                    c[key][i] = to_dt64s(value)
            if "updated_at" not in fields:
                c["updated_at"][i] = stamp
            self._bump(order="spent_date" in fields)

    def delete_entry(self, id: int) -> None:
        with self.lock:
            i = self._row_of(id)
            n = self._n
            for arr in self._cols.values():
                arr[i : n - 1] = arr[i + 1 : n]
            self._cols["notes"][n - 1] = None
            self._n -= 1
            self._bump(order=True)

    def get_entry(self, id: int) -> dict:
        """One entry as a dict of Python values (dates/datetimes, hours None when NaN)."""
        with self.lock:
            i = self._row_of(id)
            out: dict[str, Any] = {}
            for key, arr in self._cols.items():
                v = arr[i]
                if key == "spent_date":
                    out[key] = v.astype(object)
                elif key in ("created_at", "updated_at", "timer_started_at"):
                    out[key] = dt64s_to_py(v)
                elif key == "hours":
                    out[key] = None if np.isnan(v) else float(v)
                elif key == "notes":
                    out[key] = v
                else:
                    out[key] = v.item()
            return out

    def entries_df(self) -> pd.DataFrame:
        """Copy of all current time entries (columnar), in storage order.

        spent_date is datetime64 (midnight, no timezone); created_at/updated_at/timer_started_at
        are tz-aware UTC; hours is float with NaN for "null".
        """
        with self.lock:
            n = self._n
            data: dict[str, Any] = {}
            for key, arr in self._cols.items():
                col = arr[:n].copy()
                if key in ("created_at", "updated_at", "timer_started_at"):
                    data[key] = pd.Series(col, dtype="datetime64[s]").dt.tz_localize("UTC")
                elif key == "spent_date":
                    data[key] = pd.Series(col.astype("datetime64[s]"))
                elif key == "notes":
                    data[key] = pd.Series(col, dtype=object)
                else:
                    data[key] = pd.Series(col)
            return pd.DataFrame(data)

    # ------------------------------------------------------------------ queries (server side)
    def _global_order(self) -> np.ndarray:
        """Row positions sorted by spent_date DESC, id DESC (cached per version)."""
        if self._order_cache is not None and self._order_cache[0] == self._order_version:
            return self._order_cache[1]
        order = self._sort_rows(np.arange(self._n, dtype=np.int64))
        self._order_cache = (self._order_version, order)
        return order

    def _sort_rows(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return rows.astype(np.int64)
        days = self._cols["spent_date"][rows].astype(np.int64)
        ids = self._cols["id"][rows]
        id_min, id_max = int(ids.min()), int(ids.max())
        d_min, d_max = int(days.min()), int(days.max())
        id_span = id_max - id_min + 1
        if id_span < (1 << 42) and (d_max - d_min + 1) < (1 << 20):
            key = (days - d_min) * id_span + (ids - id_min)
            return rows[np.argsort(-key, kind="stable")]
        return rows[np.lexsort((-ids, -days))]

    def select_entries(
        self,
        *,
        user_id: int | None = None,
        project_id: int | None = None,
        client_id: int | None = None,
        task_id: int | None = None,
        is_running: bool | None = None,
        is_billed: bool | None = None,
        updated_since: Any = None,
        from_date: Any = None,
        to_date: Any = None,
        allowed_user_ids: Iterable[int] | None = None,
        allowed_project_ids: Iterable[int] | None = None,
        match_nothing: bool = False,
    ) -> np.ndarray:
        """Row positions matching the filters, sorted like Harvest (spent_date DESC, id DESC).

        ``allowed_*`` restrict what a non-admin token may see (an entry is visible when its
        user OR its project is allowed). Results are cached per (filters, version); the caller
        must hold ``state.lock`` while it uses the returned positions.
        """
        since = to_dt64s(updated_since, ceil=True) if updated_since is not None else None
        lo = to_day(from_date) if from_date is not None else None
        hi = to_day(to_date) if to_date is not None else None
        au = tuple(sorted({int(x) for x in allowed_user_ids})) if allowed_user_ids is not None else None
        ap = tuple(sorted({int(x) for x in allowed_project_ids})) if allowed_project_ids is not None else None
        key = (
            user_id,
            project_id,
            client_id,
            task_id,
            is_running,
            is_billed,
            since,
            lo,
            hi,
            au,
            ap,
            match_nothing,
        )
        with self.lock:
            key = (self.version, *key)
            cached = self._query_cache.get(key)
            if cached is not None:
                self._query_cache.move_to_end(key)
                return cached
            n = self._n
            c = self._cols
            mask: np.ndarray | None = None

            def both(m: np.ndarray) -> None:
                nonlocal mask
                mask = m if mask is None else (mask & m)

            if match_nothing or is_billed is True:  # nothing is ever billed in the simulator
                result = np.empty(0, dtype=np.int64)
            else:
                for col, val in (
                    ("user_id", user_id),
                    ("project_id", project_id),
                    ("client_id", client_id),
                    ("task_id", task_id),
                ):
                    if val is not None:
                        both(c[col][:n] == int(val))
                if is_running is not None:
                    both(c["is_running"][:n] == bool(is_running))
                if since is not None:
                    both(c["updated_at"][:n] >= since)
                if lo is not None:
                    both(c["spent_date"][:n] >= lo)
                if hi is not None:
                    both(c["spent_date"][:n] <= hi)
                if au is not None or ap is not None:
                    vis = np.zeros(n, dtype=bool)
                    if au:
                        vis |= np.isin(c["user_id"][:n], np.array(au, dtype=np.int64))
                    if ap:
                        vis |= np.isin(c["project_id"][:n], np.array(ap, dtype=np.int64))
                    both(vis)
                if mask is None:
                    result = self._global_order()
                elif self._order_cache is not None and self._order_cache[0] == self._order_version:
                    order = self._order_cache[1]
                    result = order[mask[order]]
                else:  # sorting only the matches is cheaper than a full sort
                    result = self._sort_rows(np.flatnonzero(mask))
            self._query_cache[key] = result
            while len(self._query_cache) > self.QUERY_CACHE_SIZE:
                self._query_cache.popitem(last=False)
            return result

    def lookups(self) -> dict[str, dict]:
        """Name maps used for rendering (cached until users/projects/clients/tasks change)."""
        with self.lock:
            if self._lookup_cache is not None and self._lookup_cache[0] == self._meta_version:
                return self._lookup_cache[1]
            u = self._users
            users = {int(i): f"{f} {last}" for i, f, last in zip(u["id"], u["first_name"], u["last_name"], strict=True)}
            p = self._projects
            projects = {
                int(i): (name, code, int(cid))
                for i, name, code, cid in zip(p["id"], p["name"], p["code"], p["client_id"], strict=True)
            }
            maps = {
                "users": users,
                "projects": projects,
                "clients": dict(self.clients),
                "tasks": dict(self.tasks),
            }
            self._lookup_cache = (self._meta_version, maps)
            return maps

    # ------------------------------------------------------------------ generation
    @classmethod
    def generate(
        cls,
        seed: int,
        n_entries: int,
        n_users: int,
        project_ids: Sequence[int],
        start: date,
        end: date,
        *,
        anchor: datetime | None = None,
        n_clients: int | None = None,
    ) -> SimulatorState:
        """Deterministic data from ``numpy.random.default_rng(seed)``.

        - users: ids 3000001.., e-mail ``first.last<i>@example.com``; user 0 is an active
          administrator, ~10% managers, ~10% archived (never user 0).
        - projects: the given ids, spread over ``n_clients`` clients (default ceil(p/2), max 8).
        - entries: ids 2000000001.., uniform over users/projects/tasks, hours 0.25..8 in 0.25
          steps, spent_date uniform in [start, end], created_at/updated_at in the 30 days
          before ``anchor`` (default 2026-11-01T00:00:00Z, updated_at >= created_at).
        """
        if n_users < 1 and n_entries:
            raise ValueError("n_users must be >= 1 when generating entries")
        if not project_ids and n_entries:
            raise ValueError("project_ids must not be empty when generating entries")
        anchor_dt = to_utc_datetime(anchor) if anchor is not None else DEFAULT_ANCHOR
        anchor_s = int(anchor_dt.timestamp())
        rng = np.random.default_rng(seed)
        st = cls()

        # clients & projects
        n_proj = len(project_ids)
        n_cli = n_clients if n_clients is not None else min(8, max(1, math.ceil(n_proj / 2)))
        client_ids = [5000001 + k for k in range(n_cli)]
        for k, cid in enumerate(client_ids):
            base = _CLIENT_NAMES[k % len(_CLIENT_NAMES)]
            st.clients[cid] = base if k < len(_CLIENT_NAMES) else f"{base} {k // len(_CLIENT_NAMES) + 1}"
        start_d, end_d = to_day(start), to_day(end)
        if end_d < start_d:
            raise ValueError("end must not be before start")
        created_proj = np.datetime64(anchor_s - 400 * 86400, "s")
        proj_rows = []
        for k, pid in enumerate(project_ids):
            word = _PROJECT_WORDS[int(rng.integers(len(_PROJECT_WORDS)))]
            cid = client_ids[k % n_cli]
            proj_rows.append(
                {
                    "id": int(pid),
                    "name": f"{st.clients[cid]} {word}",
                    "code": f"PRJ-{int(pid)}",
                    "client_id": cid,
                    "is_active": True,
                    "starts_on": start_d.astype(object),
                    "ends_on": None,
                    "created_at": created_proj,
                    "updated_at": created_proj,
                }
            )
        if proj_rows:
            pdf = pd.DataFrame(proj_rows)
            pdf["id"] = pdf["id"].astype("int64")
            pdf["client_id"] = pdf["client_id"].astype("int64")
            pdf["is_active"] = pdf["is_active"].astype(bool)
            for col in ("name", "code", "starts_on", "ends_on"):
                pdf[col] = pdf[col].astype(object)
            for col in ("created_at", "updated_at"):
                pdf[col] = pd.Series(pdf[col].to_numpy(dtype="datetime64[s]")).dt.tz_localize("UTC")
            if pdf["id"].duplicated().any():
                raise ValueError("duplicate project ids")
            st._projects = pdf

        # users
        if n_users:
            fi = rng.integers(len(_FIRST_NAMES), size=n_users)
            li = rng.integers(len(_LAST_NAMES), size=n_users)
            role_r = rng.random(n_users)
            active_r = rng.random(n_users)
            tz_i = rng.integers(len(_TIMEZONES), size=n_users)
            u_created = anchor_s - rng.integers(30 * 86400, 730 * 86400, size=n_users)
            u_updated = u_created + (rng.random(n_users) * (anchor_s - u_created)).astype(np.int64)
            firsts = [_FIRST_NAMES[k] for k in fi]
            lasts = [_LAST_NAMES[k] for k in li]
            roles = [
                ["administrator"] if i == 0 else ["manager"] if role_r[i] < 0.1 else ["member"] for i in range(n_users)
            ]
            active = active_r >= 0.1
            active[0] = True
            st._users = pd.DataFrame(
                {
                    "id": pd.Series(np.arange(3000001, 3000001 + n_users, dtype=np.int64)),
                    "first_name": pd.Series(firsts, dtype=object),
                    "last_name": pd.Series(lasts, dtype=object),
                    "email": pd.Series(
                        [
                            f"{f.lower()}.{la.lower()}{i}@example.com"
                            for i, (f, la) in enumerate(zip(firsts, lasts, strict=True))
                        ],
                        dtype=object,
                    ),
                    "is_active": pd.Series(active, dtype=bool),
                    "timezone": pd.Series([_TIMEZONES[k] for k in tz_i], dtype=object),
                    "access_roles": pd.Series(roles, dtype=object),
                    "created_at": pd.Series(u_created.astype("datetime64[s]")).dt.tz_localize("UTC"),
                    "updated_at": pd.Series(u_updated.astype("datetime64[s]")).dt.tz_localize("UTC"),
                }
            )

        # entries (vectorised)
        n = int(n_entries)
        if n:
            user_ids = np.arange(3000001, 3000001 + n_users, dtype=np.int64)
            proj_arr = np.asarray(project_ids, dtype=np.int64)
            proj_client = np.array([client_ids[k % n_cli] for k in range(n_proj)], dtype=np.int64)
            task_ids = np.array(sorted(st.tasks), dtype=np.int64)
            note_pool = np.array([*_NOTES, None, None], dtype=object)

            p_idx = rng.integers(n_proj, size=n)
            created_off = rng.integers(0, 30 * 86400, size=n)
            upd_frac = rng.random(n)
            cols = {
                "id": np.arange(2000000001, 2000000001 + n, dtype=np.int64),
                "spent_date": (
                    rng.integers(
                        int(start_d.astype(np.int64)),
                        int(end_d.astype(np.int64)) + 1,
                        size=n,
                    )
                ).astype("datetime64[D]"),
                "user_id": user_ids[rng.integers(n_users, size=n)],
                "project_id": proj_arr[p_idx],
                "task_id": task_ids[rng.integers(len(task_ids), size=n)],
                "client_id": proj_client[p_idx],
                "hours": rng.integers(1, 33, size=n).astype(np.float64) * 0.25,
                "notes": note_pool[rng.integers(len(note_pool), size=n)],
                "is_running": rng.random(n) < 0.0005,
                "billable": rng.random(n) < 0.8,
            }
            created = anchor_s - created_off
            updated = created + (upd_frac * created_off).astype(np.int64)
            cols["created_at"] = created.astype("datetime64[s]")
            cols["updated_at"] = updated.astype("datetime64[s]")
            cols["is_locked"] = cols["spent_date"] < (end_d - np.timedelta64(60, "D"))
            cols["is_locked"] &= ~cols["is_running"]
            timer = np.full(n, _NAT_S, dtype="datetime64[s]")
            timer[cols["is_running"]] = cols["updated_at"][cols["is_running"]]
            cols["timer_started_at"] = timer
            st._cols = {k: np.ascontiguousarray(cols[k], dtype=ENTRY_COLUMNS[k]) for k in ENTRY_COLUMNS}
            st._n = n
            st._max_id = int(cols["id"][-1])
            st._last_stamp = np.datetime64(anchor_s, "s")
        st._bump(meta=True, order=True)
        st._global_order()  # warm the sort cache (unfiltered queries)
        return st

    def memory_bytes(self) -> int:
        """Approximate bytes held by the entry columns (excluding shared note strings)."""
        return int(sum(a.nbytes for a in self._cols.values()))
