"""HTTP front end of the Harvest API v2 simulator (standard library ``http.server``).

Request flow for ``/v2/...`` (see :meth:`HarvestSimulator.handle`):

1. stats are counted (``sim.stats``),
2. ``sim.before_request(handler)`` — hook for fault injection (``sim.faults``); returning a
   response tuple ``(status, payload, headers)`` short-circuits the request,
3. User-Agent (400), token (401), account (403),
4. rate limit per account (429 + Retry-After),
5. the route handler.

``/_sim/...`` control endpoints need no auth and are not counted in the stats.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import socket
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec
import numpy as np

from .api_error import ApiError, Response
from .faults import Faults
from .state import SimulatorState, iso_z, to_utc_datetime

MAX_PER_PAGE = 2000
DEFAULT_ACCOUNT_ID = "123456"
DEFAULT_TOKEN = "test-token"


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, {"message": message})


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Any  # email.message.Message (case-insensitive .get)
    body: bytes
    base_url: str
    token: dict | None = None
    match: re.Match | None = None
    extra: dict = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, {"message": f"invalid JSON body: {exc}"}) from exc


# --------------------------------------------------------------------------- param parsing
def _int_param(req: Request, name: str) -> int | None:
    raw = req.param(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise _unprocessable(f"{name} must be an integer") from None


def _bool_param(req: Request, name: str) -> bool | None:
    raw = req.param(name)
    if raw is None or raw == "":
        return None
    low = raw.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise _unprocessable(f"{name} must be true or false")


def _datetime_param(req: Request, name: str) -> datetime | None:
    raw = req.param(name)
    if raw is None or raw == "":
        return None
    try:
        return to_utc_datetime(raw)
    except (TypeError, ValueError):
        raise _unprocessable(f"{name} must be an ISO 8601 date-time") from None


def _date_param(req: Request, name: str) -> date | None:
    raw = req.param(name)
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _unprocessable(f"{name} must be a date (YYYY-MM-DD)") from None


def _per_page(req: Request) -> int:
    per_page = _int_param(req, "per_page")
    if per_page is None:
        return MAX_PER_PAGE
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise _unprocessable(f"per_page must be between 1 and {MAX_PER_PAGE}")
    return per_page


def _page(req: Request) -> int:
    page = _int_param(req, "page")
    if page is None:
        return 1
    if page < 1:
        raise _unprocessable("page must be greater than or equal to 1")
    return page


def _link(req: Request, **params: Any) -> str:
    """Absolute URL of the same path with page/per_page/cursor replaced, others kept."""
    replaced = {"page", "per_page", "cursor"}
    query = [(k, str(v)) for k, v in params.items() if v is not None]
    query += [(k, v) for k, v in req.query if k not in replaced]
    return f"{req.base_url}{req.path}?{urlencode(query)}"


def encode_cursor(after_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{int(after_id)}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "after":
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _unprocessable("Invalid cursor") from None


def _ua_id(project_id: int, user_id: int) -> int:
    return (project_id * 7919 + user_id * 104729) % 900_000_000 + 100_000_000


def _ta_id(project_id: int, task_id: int) -> int:
    return (project_id * 15485863 + task_id * 32452843) % 900_000_000 + 100_000_000


# --------------------------------------------------------------------------- rendering
def render_entries(state: SimulatorState, rows: np.ndarray) -> list[dict]:
    """Harvest-shaped JSON objects for the given row positions (caller holds state.lock)."""
    if not len(rows):
        return []
    col = state.column
    maps = state.lookups()
    users, projects, clients, tasks = (
        maps["users"],
        maps["projects"],
        maps["clients"],
        maps["tasks"],
    )
    ids = col("id")[rows].tolist()
    spent = np.datetime_as_string(col("spent_date")[rows], unit="D").tolist()
    hours_arr = col("hours")[rows]
    hours = [None if math.isnan(h) else h for h in hours_arr.tolist()]
    rounded = [None if math.isnan(h) else h for h in (np.ceil(np.round(hours_arr * 4, 6)) / 4).tolist()]
    user_ids = col("user_id")[rows].tolist()
    project_ids = col("project_id")[rows].tolist()
    task_ids = col("task_id")[rows].tolist()
    client_ids = col("client_id")[rows].tolist()
    notes = col("notes")[rows].tolist()
    running = col("is_running")[rows].tolist()
    locked = col("is_locked")[rows].tolist()
    billable = col("billable")[rows].tolist()
    created = iso_z(col("created_at")[rows])
    updated = iso_z(col("updated_at")[rows])
    timer = iso_z(col("timer_started_at")[rows])
    out = []
    for k in range(len(ids)):
        uid, pid, tid, cid = user_ids[k], project_ids[k], task_ids[k], client_ids[k]
        pname, pcode, _ = projects.get(pid, (f"Project {pid}", None, cid))
        out.append(
            {
                "id": ids[k],
                "spent_date": spent[k],
                "hours": hours[k],
                "hours_without_timer": hours[k],
                "rounded_hours": rounded[k],
                "notes": notes[k],
                "is_locked": locked[k],
                "locked_reason": "Item Approved and Locked for this Time Period" if locked[k] else None,
                "is_closed": False,
                "is_billed": False,
                "timer_started_at": timer[k] if running[k] else None,
                "started_time": None,
                "ended_time": None,
                "is_running": running[k],
                "billable": billable[k],
                "budgeted": False,
                "billable_rate": None,
                "cost_rate": None,
                "created_at": created[k],
                "updated_at": updated[k],
                "user": {"id": uid, "name": users.get(uid, f"User {uid}")},
                "client": {
                    "id": cid,
                    "name": clients.get(cid, f"Client {cid}"),
                    "currency": "USD",
                },
                "project": {"id": pid, "name": pname, "code": pcode},
                "task": {"id": tid, "name": tasks.get(tid, f"Task {tid}")},
                "user_assignment": {
                    "id": _ua_id(pid, uid),
                    "is_project_manager": False,
                    "is_active": True,
                    "budget": None,
                    "hourly_rate": None,
                },
                "task_assignment": {
                    "id": _ta_id(pid, tid),
                    "billable": True,
                    "is_active": True,
                    "budget": None,
                },
                "invoice": None,
                "external_reference": None,
                "approval_status": "unsubmitted",
            }
        )
    return out


def _iso_ts(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:  # NaT
        return None


def render_user(row: dict, role_override: str | None = None) -> dict:
    roles = [role_override] if role_override else list(row["access_roles"])
    return {
        "id": int(row["id"]),
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "email": row["email"],
        "telephone": "",
        "timezone": row["timezone"],
        "has_access_to_all_future_projects": False,
        "is_contractor": False,
        "is_active": bool(row["is_active"]),
        "weekly_capacity": 126000,
        "default_hourly_rate": None,
        "cost_rate": None,
        "roles": [],
        "access_roles": roles,
        "permissions_claims": [],
        "avatar_url": "https://d3s3969qhosaug.cloudfront.net/v2/avatar-generic.png",
        "created_at": _iso_ts(row["created_at"]),
        "updated_at": _iso_ts(row["updated_at"]),
    }


def render_project(row: dict, clients: dict[int, str]) -> dict:
    cid = int(row["client_id"])
    return {
        "id": int(row["id"]),
        "name": row["name"],
        "code": row["code"],
        "is_active": bool(row["is_active"]),
        "is_billable": True,
        "is_fixed_fee": False,
        "bill_by": "Project",
        "budget": None,
        "budget_by": "none",
        "notes": "",
        "starts_on": row["starts_on"].isoformat() if row["starts_on"] is not None else None,
        "ends_on": row["ends_on"].isoformat() if row["ends_on"] is not None else None,
        "created_at": _iso_ts(row["created_at"]),
        "updated_at": _iso_ts(row["updated_at"]),
        "client": {
            "id": cid,
            "name": clients.get(cid, f"Client {cid}"),
            "currency": "USD",
        },
    }


# --------------------------------------------------------------------------- HTTP plumbing
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HarvestSimulator/1.0"
    timeout = 120  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.sim._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sim.verbose:
            super().log_message(format, *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # Harvest stamps updated_at and the Date header with one clock: so does the simulator,
        # whose clock a test can move (state.now / state.advance).
        if timestamp is None:
            timestamp = self.server.sim.state.now.timestamp()
        return super().date_time_string(timestamp)

    def _dispatch(self) -> None:
        self.server.sim.handle(self)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _dispatch

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # One write for headers + body: a separate small write would meet Nagle + delayed ACK (~40 ms).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: HarvestSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # client went away (or a fault closed the socket): not worth a traceback
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------- the simulator
class HarvestSimulator:
    """Local Harvest API v2 server. ``with HarvestSimulator(state) as sim: requests.get(sim.url + ...)``."""

    def __init__(
        self,
        state: SimulatorState | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: dict[str, dict] | None = None,
        rate_limit: tuple[int, float] | None = None,
        *,
        verbose: bool = False,
    ) -> None:
        if state is None:
            from .scenarios import generated

            state = generated()
        self.state = state
        self.host = host
        self.port = port
        self.verbose = verbose
        if tokens is None:
            tokens = {
                DEFAULT_TOKEN: {
                    "account_id": DEFAULT_ACCOUNT_ID,
                    "role": "administrator",
                    "user_id": state.default_admin_id(),
                }
            }
        self.tokens: dict[str, dict] = {k: dict(v) for k, v in tokens.items()}
        self.rate_limit = rate_limit
        self.faults: Any = None  # fault-injection object: .before_request(handler) -> Response | None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self.connections_opened = 0  # TCP connections accepted (keep-alive checks)
        self._stats_lock = threading.Lock()
        self._rl_lock = threading.Lock()
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self._stats: dict[str, Any] = {}
        self.reset_stats()
        self.routes: list[tuple[str, re.Pattern, Callable[[Request], Response]]] = []
        self.control_routes: list[tuple[str, re.Pattern, Callable[[Request], Response]]] = []
        self._install_routes()
        Faults().install(self)  # sim.faults + the /_sim/faults control endpoints (faults.py)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HarvestSimulator:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="harvest-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:  # close keep-alive connections so handler threads end
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
                self.connections_opened += 1
            else:
                self._conns.discard(conn)

    # ------------------------------------------------------------------ stats
    @property
    def stats(self) -> dict[str, Any]:
        """Snapshot: requests, by_path, by_status, status_429 (``/_sim/`` calls not counted)."""
        with self._stats_lock:
            return {
                "requests": self._stats["requests"],
                "by_path": dict(self._stats["by_path"]),
                "by_status": {str(k): v for k, v in self._stats["by_status"].items()},
                "status_429": self._stats["status_429"],
            }

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats = {
                "requests": 0,
                "by_path": defaultdict(int),
                "by_status": defaultdict(int),
                "status_429": 0,
            }

    def _count(self, path: str) -> None:
        with self._stats_lock:
            self._stats["requests"] += 1
            self._stats["by_path"][path] += 1

    def _count_status(self, status: int) -> None:
        with self._stats_lock:
            self._stats["by_status"][status] += 1
            if status == 429:
                self._stats["status_429"] += 1

    # ------------------------------------------------------------------ tokens / rate limit
    def add_token(
        self,
        token: str,
        account_id: str = DEFAULT_ACCOUNT_ID,
        role: str = "administrator",
        user_id: int | None = None,
    ) -> None:
        self.tokens[token] = {
            "account_id": str(account_id),
            "role": role,
            "user_id": user_id if user_id is not None else self.state.default_admin_id(),
        }

    def _rate_check(self, account: str) -> int | None:
        """None when the request may proceed, else the Retry-After seconds."""
        limit = self.rate_limit
        if not limit:
            return None
        max_requests, window = int(limit[0]), float(limit[1])
        with self._rl_lock:
            dq = self._windows[account]
            now = time.monotonic()
            while dq and dq[0] <= now - window:
                dq.popleft()
            if len(dq) >= max_requests:
                return max(1, math.ceil(dq[0] + window - now))
            dq.append(now)
            return None

    def reset_rate_limit(self) -> None:
        with self._rl_lock:
            self._windows.clear()

    # ------------------------------------------------------------------ hook
    def before_request(self, handler: _Handler) -> Response | None:
        """Fault-injection hook, called for every ``/v2`` request before auth.

        ``handler.sim_request`` holds the parsed :class:`Request`. Return None to continue, or
        ``(status, payload, headers)`` to answer with that instead (payload: JSON-able or bytes).
        A fault object may also act on the handler directly (e.g. close ``handler.connection``
        and return ``(0, None, {})`` to send nothing).
        """
        if self.faults is not None:
            return self.faults.before_request(handler)
        return None

    # ------------------------------------------------------------------ dispatch
    def handle(self, handler: _Handler) -> None:
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = handler.rfile.read(length) if length > 0 else b""
        parts = urlsplit(handler.path)
        host = handler.headers.get("Host") or f"{self.host}:{self.port}"
        req = Request(
            method=handler.command,
            path=parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers=handler.headers,
            body=body,
            base_url=f"http://{host}",
        )
        handler.sim_request = req
        is_control = req.path.startswith("/_sim/")
        try:
            if is_control:
                status, payload, headers = self._route(self.control_routes, req)
            else:
                self._count(req.path)
                hooked = self.before_request(handler)
                if hooked is not None:
                    status, payload, headers = hooked
                    if status == 0:  # the hook handled the connection itself
                        handler.close_connection = True
                        return
                else:
                    status, payload, headers = self._api(req)
        except ApiError as err:
            status, payload, headers = err.status, err.payload, err.headers
        except Exception as exc:  # noqa: BLE001 — report instead of killing the connection
            status, payload, headers = (
                500,
                {"message": f"simulator error: {type(exc).__name__}: {exc}"},
                {},
            )
        if not is_control:
            self._count_status(status)
        handler.send_json(status, payload, headers)

    def _api(self, req: Request) -> Response:
        if not req.path.startswith("/v2/"):
            raise ApiError(404, {"error": "not_found", "message": f"Not found: {req.path}"})
        if not (req.headers.get("User-Agent") or "").strip():
            raise ApiError(
                400,
                {"message": "A User-Agent header is required: name your app and a contact."},
            )
        auth = req.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        info = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            raise ApiError(
                401,
                {
                    "error": "invalid_token",
                    "error_description": "The access token provided is expired, revoked, malformed or invalid "
                    "for other reasons.",
                },
            )
        account = (req.headers.get("Harvest-Account-Id") or "").strip()
        if account != str(info["account_id"]):
            raise ApiError(
                403,
                {"message": f"The token has no access to account {account or '(missing Harvest-Account-Id)'}."},
            )
        req.token = info
        retry = self._rate_check(account)
        if retry is not None:
            raise ApiError(
                429,
                {"message": f"Too many requests. Retry in {retry} seconds."},
                {"Retry-After": str(retry)},
            )
        return self._route(self.routes, req)

    def _route(self, table: list, req: Request) -> Response:
        path_matched = False
        for method, pattern, func in table:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            path_matched = True
            if method == req.method or (method == "GET" and req.method == "HEAD"):
                req.match = m
                return func(req)
        if path_matched:
            raise ApiError(405, {"message": f"Method {req.method} not allowed on {req.path}"})
        raise ApiError(404, {"error": "not_found", "message": f"Not found: {req.path}"})

    def add_route(
        self,
        method: str,
        pattern: str,
        func: Callable[[Request], Response],
        control: bool = False,
    ) -> None:
        """Register an extra route (regex over the path; control routes need no auth)."""
        (self.control_routes if control else self.routes).append((method, re.compile(pattern), func))

    def _install_routes(self) -> None:
        add = self.add_route
        add("GET", r"/v2/users/me", self._users_me)
        add("GET", r"/v2/users", self._users)
        add("GET", r"/v2/time_entries", self._time_entries)
        add("GET", r"/v2/time_entries/(\d+)", self._time_entry)
        add("GET", r"/v2/projects", self._projects)
        add("GET", r"/_sim/stats", lambda r: (200, self.stats, {}), control=True)
        add("POST", r"/_sim/reset_stats", self._c_reset_stats, control=True)
        add("GET", r"/_sim/state", self._c_state, control=True)
        add("POST", r"/_sim/clock", self._c_clock, control=True)
        add("POST", r"/_sim/entries", self._c_add_entry, control=True)
        add("PATCH", r"/_sim/entries/(\d+)", self._c_update_entry, control=True)
        add("DELETE", r"/_sim/entries/(\d+)", self._c_delete_entry, control=True)
        add("POST", r"/_sim/users", self._c_add_user, control=True)
        add("PATCH", r"/_sim/users/(\d+)", self._c_update_user, control=True)
        add("POST", r"/_sim/projects", self._c_add_project, control=True)
        add("POST", r"/_sim/tokens", self._c_add_token, control=True)
        add("DELETE", r"/_sim/tokens/([^/]+)", self._c_revoke_token, control=True)
        add("POST", r"/_sim/rate_limit", self._c_rate_limit, control=True)

    # ------------------------------------------------------------------ permissions
    @staticmethod
    def _role(req: Request) -> str:
        return str((req.token or {}).get("role") or "administrator")

    def _visible_users(self, req: Request) -> set[int] | None:
        """None = all users; else the ids a manager may see (self + teammates)."""
        role = self._role(req)
        if role == "administrator":
            return None
        if role != "manager":
            raise ApiError(
                403,
                {"message": "You do not have permission to list users. Administrator access required."},
            )
        tok = req.token or {}
        ids = {int(x) for x in tok.get("teammate_ids", [])}
        if tok.get("user_id") is not None:
            ids.add(int(tok["user_id"]))
        return ids

    # ------------------------------------------------------------------ /v2 handlers
    def _users_me(self, req: Request) -> Response:
        tok = req.token or {}
        uid = tok.get("user_id")
        try:
            row = self.state.get_user(int(uid)) if uid is not None else None
        except KeyError:
            row = None
        if row is None:
            now = self.state.now
            row = {
                "id": int(uid or 1),
                "first_name": "API",
                "last_name": "User",
                "email": "api.user@example.com",
                "timezone": "UTC",
                "is_active": True,
                "access_roles": [],
                "created_at": now,
                "updated_at": now,
            }
        return 200, render_user(row, role_override=self._role(req)), {}

    def _cursor_list(self, req: Request, key: str, df: Any, render: Callable[[dict], dict]) -> Response:
        """Cursor pagination over a small DataFrame sorted by id (``page=`` also accepted)."""
        per_page = _per_page(req)
        df = df.sort_values("id", kind="stable").reset_index(drop=True)
        ids = df["id"].to_numpy()
        total = len(df)
        total_pages = math.ceil(total / per_page) if total else 0
        cursor = req.param("cursor")
        if req.param("page") is not None and not cursor:
            page = _page(req)
            start = (page - 1) * per_page
            rows = df.iloc[start : start + per_page]
            has_next = start + per_page < total
            payload = {
                key: [render(r) for r in rows.to_dict("records")],
                "per_page": per_page,
                "total_pages": total_pages,
                "total_entries": total,
                "next_page": page + 1 if has_next else None,
                "previous_page": page - 1 if page > 1 else None,
                "page": page,
                "links": {
                    "first": _link(req, page=1, per_page=per_page),
                    "next": _link(req, page=page + 1, per_page=per_page) if has_next else None,
                    "previous": _link(req, page=page - 1, per_page=per_page) if page > 1 else None,
                    "last": _link(req, page=max(total_pages, 1), per_page=per_page),
                },
            }
            return 200, payload, {}
        start = int(np.searchsorted(ids, decode_cursor(cursor), side="right")) if cursor else 0
        rows = df.iloc[start : start + per_page]
        end = start + len(rows)

        def cursor_at(
            pos: int,
        ) -> str | None:  # link to the page starting at position pos
            return None if pos <= 0 else encode_cursor(int(ids[pos - 1]))

        last_start = (total_pages - 1) * per_page if total_pages else 0
        payload = {
            key: [render(r) for r in rows.to_dict("records")],
            "per_page": per_page,
            "total_pages": total_pages,
            "total_entries": total,
            "next_page": None,
            "previous_page": None,
            "page": None,
            "links": {
                "first": _link(req, per_page=per_page),
                "next": _link(req, cursor=encode_cursor(int(ids[end - 1])), per_page=per_page)
                if end < total and len(rows)
                else None,
                "previous": _link(req, cursor=cursor_at(start - per_page), per_page=per_page) if start > 0 else None,
                "last": _link(req, cursor=cursor_at(last_start), per_page=per_page),
            },
        }
        return 200, payload, {}

    def _users(self, req: Request) -> Response:
        visible = self._visible_users(req)
        is_active = _bool_param(req, "is_active")
        since = _datetime_param(req, "updated_since")
        df = self.state.users_df()
        if visible is not None:
            df = df[df["id"].isin(visible)]
        if is_active is not None:
            df = df[df["is_active"] == is_active]
        if since is not None:
            df = df[df["updated_at"] >= since]
        return self._cursor_list(req, "users", df, render_user)

    def _projects(self, req: Request) -> Response:
        role = self._role(req)
        if role not in ("administrator", "manager"):
            raise ApiError(403, {"message": "You do not have permission to list projects."})
        is_active = _bool_param(req, "is_active")
        client_id = _int_param(req, "client_id")
        since = _datetime_param(req, "updated_since")
        df = self.state.projects_df()
        if role == "manager":
            df = df[df["id"].isin([int(x) for x in (req.token or {}).get("project_ids", [])])]
        if is_active is not None:
            df = df[df["is_active"] == is_active]
        if client_id is not None:
            df = df[df["client_id"] == client_id]
        if since is not None:
            df = df[df["updated_at"] >= since]
        clients = self.state.lookups()["clients"]
        return self._cursor_list(req, "projects", df, lambda r: render_project(r, clients))

    def _entry_visibility(self, req: Request) -> dict[str, Any]:
        tok = req.token or {}
        role = self._role(req)
        if role == "administrator":
            return {}
        own = [int(tok["user_id"])] if tok.get("user_id") is not None else []
        if role == "manager":
            return {
                "allowed_user_ids": own + [int(x) for x in tok.get("teammate_ids", [])],
                "allowed_project_ids": [int(x) for x in tok.get("project_ids", [])],
            }
        return {"allowed_user_ids": own, "allowed_project_ids": []}

    def _time_entries(self, req: Request) -> Response:
        per_page = _per_page(req)
        page = _page(req)
        filters = {
            "user_id": _int_param(req, "user_id"),
            "project_id": _int_param(req, "project_id"),
            "client_id": _int_param(req, "client_id"),
            "task_id": _int_param(req, "task_id"),
            "is_running": _bool_param(req, "is_running"),
            "is_billed": _bool_param(req, "is_billed"),
            "updated_since": _datetime_param(req, "updated_since"),
            "from_date": _date_param(req, "from"),
            "to_date": _date_param(req, "to"),
            # no simulated entry has an external reference
            "match_nothing": bool(req.param("external_reference_id")),
        }
        filters.update(self._entry_visibility(req))
        state = self.state
        with state.lock:
            rows = state.select_entries(**filters)
            total = len(rows)
            start = (page - 1) * per_page
            entries = render_entries(state, rows[start : start + per_page])
        total_pages = math.ceil(total / per_page) if total else 0
        has_next = page < total_pages
        payload = {
            "time_entries": entries,
            "per_page": per_page,
            "total_pages": total_pages,
            "total_entries": total,
            "next_page": page + 1 if has_next else None,
            "previous_page": page - 1 if page > 1 else None,
            "page": page,
            "links": {
                "first": _link(req, page=1, per_page=per_page),
                "next": _link(req, page=page + 1, per_page=per_page) if has_next else None,
                "previous": _link(req, page=page - 1, per_page=per_page) if page > 1 else None,
                "last": _link(req, page=max(total_pages, 1), per_page=per_page),
            },
        }
        return 200, payload, {}

    def _time_entry(self, req: Request) -> Response:
        entry_id = int(req.match.group(1))
        state = self.state
        with state.lock:
            if not state.has_entry(entry_id):
                raise ApiError(
                    404,
                    {
                        "error": "not_found",
                        "message": f"Time entry {entry_id} not found",
                    },
                )
            vis = self._entry_visibility(req)
            if vis:
                entry = state.get_entry(entry_id)
                if entry["user_id"] not in vis["allowed_user_ids"] and entry["project_id"] not in vis.get(
                    "allowed_project_ids", []
                ):
                    raise ApiError(403, {"message": "You do not have access to this time entry."})
            rows = np.array([state._row_of(entry_id)], dtype=np.int64)
            return 200, render_entries(state, rows)[0], {}

    # ------------------------------------------------------------------ /_sim handlers
    def _c_reset_stats(self, req: Request) -> Response:
        self.reset_stats()
        return 200, {"ok": True}, {}

    def _c_state(self, req: Request) -> Response:
        st = self.state
        with st.lock:
            return (
                200,
                {
                    "version": st.version,
                    "n_entries": st.n_entries,
                    "n_users": len(st.users_df()),
                    "now": st.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "rate_limit": list(self.rate_limit) if self.rate_limit else None,
                },
                {},
            )

    def _c_clock(self, req: Request) -> Response:
        body = req.json()
        try:
            if "now" in body:
                self.state.now = body["now"]
            if body.get("advance_seconds"):
                self.state.advance(float(body["advance_seconds"]))
        except (TypeError, ValueError) as exc:
            raise _unprocessable(str(exc)) from None
        return 200, {"now": self.state.now.strftime("%Y-%m-%dT%H:%M:%SZ")}, {}

    @staticmethod
    def _call(func: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyError as exc:
            raise ApiError(404, {"message": str(exc.args[0] if exc.args else exc)}) from None
        except (TypeError, ValueError) as exc:
            raise _unprocessable(str(exc)) from None

    def _entry_payload(self, entry_id: int) -> dict:
        st = self.state
        with st.lock:
            return render_entries(st, np.array([st._row_of(entry_id)], dtype=np.int64))[0]

    def _c_add_entry(self, req: Request) -> Response:
        entry_id = self._call(self.state.add_entry, **req.json())
        return 201, {"id": entry_id, "time_entry": self._entry_payload(entry_id)}, {}

    def _c_update_entry(self, req: Request) -> Response:
        entry_id = int(req.match.group(1))
        self._call(self.state.update_entry, entry_id, **req.json())
        return 200, {"id": entry_id, "time_entry": self._entry_payload(entry_id)}, {}

    def _c_delete_entry(self, req: Request) -> Response:
        entry_id = int(req.match.group(1))
        self._call(self.state.delete_entry, entry_id)
        return 200, {"id": entry_id, "deleted": True}, {}

    def _c_add_user(self, req: Request) -> Response:
        user = self._call(self.state.add_user, **req.json())
        return 201, render_user(user), {}

    def _c_update_user(self, req: Request) -> Response:
        user = self._call(self.state.update_user, int(req.match.group(1)), **req.json())
        return 200, render_user(user), {}

    def _c_add_project(self, req: Request) -> Response:
        project = self._call(self.state.add_project, **req.json())
        return 201, render_project(project, self.state.lookups()["clients"]), {}

    def _c_add_token(self, req: Request) -> Response:
        body = req.json()
        if not body.get("token"):
            raise _unprocessable("token is required")
        self.add_token(
            str(body["token"]),
            account_id=str(body.get("account_id", DEFAULT_ACCOUNT_ID)),
            role=str(body.get("role", "administrator")),
            user_id=body.get("user_id"),
        )
        for extra in ("teammate_ids", "project_ids"):
            if extra in body:
                self.tokens[str(body["token"])][extra] = list(body[extra])
        return 201, {"token": body["token"], **self.tokens[str(body["token"])]}, {}

    def _c_revoke_token(self, req: Request) -> Response:
        """The token stops working at once, as when its owner revokes it at id.getharvest.com (then 401)."""
        token = req.match.group(1)
        if self.tokens.pop(token, None) is None:
            raise ApiError(404, {"message": f"no token {token!r}"})
        return 200, {"revoked": token}, {}

    def _c_rate_limit(self, req: Request) -> Response:
        """Body ``{"limit": 100, "window": 15}`` enables, ``{"limit": null}`` disables; window reset."""
        body = req.json()
        limit = body.get("limit")
        self.rate_limit = None if limit is None else (int(limit), float(body.get("window", 15.0)))
        self.reset_rate_limit()
        return (
            200,
            {"rate_limit": list(self.rate_limit) if self.rate_limit else None},
            {},
        )
