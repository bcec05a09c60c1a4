"""Switchable fault modes of the Harvest simulator: what a network and Harvest itself do on a bad day.

Every simulator has a :class:`Faults` object as ``sim.faults``; the server calls
``sim.faults.before_request(handler)`` for each ``/v2`` request. Switch faults on from Python::

    sim.faults.add("status", path="/v2/time_entries", status=503, retry_after=1, times=3)
    sim.faults.add("drop", path="/v2/time_entries", nth=2)          # the 2nd listing request only
    sim.faults.add("slow", delay=3, probability=0.2, seed=7, times=None)

or from another process (no auth, not counted in the stats)::

    POST   /_sim/faults       {"mode": "status", "status": 500, "times": 2}   (or {"faults": [...]})
    GET    /_sim/faults       the faults with how often each matched and fired
    DELETE /_sim/faults       all off;  DELETE /_sim/faults/<id>  one off

Targeting (every mode): ``path`` (regex, full match; default every /v2 path), ``params`` (query
parameters that must be present with these values, e.g. ``{"page": "2"}``), ``nth`` (the first
matching request that may fire, 1-based), ``times`` (how many times it fires; ``None`` = from
``nth`` on, forever), ``probability`` (chance an eligible request fires, from a RNG seeded with
``seed``: the same seed gives the same sequence).

Modes and their options:

- ``status``: answer ``status`` (429, 500, 502, 503 …) with a Harvest-like JSON message and,
  with ``retry_after``, a ``Retry-After`` header.
- ``unauthorized``: 401 with Harvest's invalid-token body (a token revoked mid-run: ``nth=N+1,
  times=None``).
- ``role``: the requesting token's role becomes ``role`` (``member``/``manager``) from then on,
  and the request is answered with it: ``/v2/users/me`` shows it in ``access_roles`` and a
  manager's listings silently hold only part of the entries.
- ``drop``: send the status line, the headers (with the full Content-Length) and ``keep``
  (fraction, default 0.5) of the real body, then close the connection.
- ``slow``: sleep ``delay`` seconds, then answer normally (slower than a client's timeout).
- ``truncate``: 200 with the first ``keep`` (fraction, default 0.5) of the real JSON body, framed
  correctly (the client reads a complete response that is not valid JSON).
- ``not_json``: ``status`` (default 200) with ``body`` (default an HTML error page) as
  ``content_type`` (default text/html).
- ``shape``: 200 with ``body`` as JSON (default ``{"data": []}``; a list works too): a response
  that is not Harvest's shape at all.
- ``page_shift``: answer normally, then change the data before the next request, as another
  Harvest user would while we page: ``delete_served`` deletes the first N entries this response
  served (the entries after them slide to earlier pages), ``insert_newest`` adds N entries that
  sort before everything served (the entries slide to later pages), ``insert`` adds the given
  entries (``SimulatorState.add_entry`` keyword arguments), ``delete_ids`` deletes those ids;
  from Python, ``action(sim, request, payload)`` does anything else.
- ``raw_records``: answer normally, with ``records`` (any JSON values, exactly as given) added to the
  response's ``key`` list (``time_entries`` by default, or ``users``), or in its place with ``replace``;
  ``total_entries`` follows. The body is written as it is: a string holding a lone surrogate goes out as
  its JSON escape (``"\\ud800"``), U+0000 as ``"\\u0000"``, other text as raw UTF-8. Fuzz tests serve
  what Harvest could send this way.
- ``bad_records``: answer with some time entries of the page damaged: ``records`` is a list of
  ``{"id": <entry id> | "index": <position in the page>, "set": {"hours": null, "user.id": 999},
  "unset": ["spent_date"]}`` (dotted keys reach nested objects).
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .api_error import ApiError

_TARGETING = ("path", "params", "nth", "times", "probability", "seed")

# mode -> its options with their defaults
MODES: dict[str, dict[str, Any]] = {
    "status": {"status": 500, "retry_after": None, "body": None},
    "unauthorized": {},
    "role": {"role": "member"},
    "drop": {"keep": 0.5},
    "slow": {"delay": 2.0},
    "truncate": {"keep": 0.5},
    "not_json": {"status": 200, "body": None, "content_type": "text/html; charset=utf-8"},
    "shape": {"body": {"data": []}},
    "page_shift": {"delete_served": 0, "insert_newest": 0, "insert": (), "delete_ids": (), "action": None},
    "bad_records": {"records": ()},
    "raw_records": {"records": (), "key": "time_entries", "replace": False},
}

HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>We're sorry, but something went wrong</title></head>"
    "<body><h1>Harvest is temporarily unavailable</h1><p>Please try again in a moment.</p></body></html>"
)
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons.",
}
_MISSING = object()


@dataclass
class Fault:
    """One switched-on fault: a mode, its options, where it strikes and how often it did."""

    id: int
    mode: str
    options: dict[str, Any]
    path: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    nth: int = 1
    times: int | None = 1
    probability: float = 1.0
    seed: int = 0
    matched: int = 0  # requests that matched path and params
    fired: int = 0  # requests the fault acted on
    _pattern: re.Pattern | None = field(default=None, repr=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; expected one of {sorted(MODES)}")
        unknown = set(self.options) - set(MODES[self.mode])
        if unknown:
            raise ValueError(
                f"fault mode {self.mode!r} has no option {sorted(unknown)}; it has {sorted(MODES[self.mode])}"
            )
        self.options = {**MODES[self.mode], **self.options}
        if self.nth < 1:
            raise ValueError("nth must be >= 1")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or null (forever)")
        if not 0.0 <= float(self.probability) <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        self.params = {str(k): str(v) for k, v in (self.params or {}).items()}
        self._pattern = re.compile(self.path) if self.path else None
        self._rng = random.Random(self.seed)

    def matches(self, req: Any) -> bool:
        if self._pattern is not None and not self._pattern.fullmatch(req.path):
            return False
        return all(req.param(k) == v for k, v in self.params.items())

    def eligible(self) -> bool:
        """Called once per matching request (under the Faults lock): does this one fire?"""
        self.matched += 1
        if self.matched < self.nth or (self.times is not None and self.fired >= self.times):
            return False
        if self.probability < 1.0 and self._rng.random() >= self.probability:
            return False
        self.fired += 1
        return True

    def describe(self) -> dict[str, Any]:
        options = {k: v for k, v in self.options.items() if not callable(v)}
        return {
            "id": self.id,
            "mode": self.mode,
            **options,
            "path": self.path,
            "params": self.params,
            "nth": self.nth,
            "times": self.times,
            "probability": self.probability,
            "seed": self.seed,
            "matched": self.matched,
            "fired": self.fired,
        }


class Faults:
    """The fault switchboard of one simulator (thread-safe): ``add``, ``remove``, ``clear``, ``list``."""

    def __init__(self) -> None:
        self.sim: Any = None
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1

    # -- wiring ------------------------------------------------------------------------------
    def install(self, sim: Any) -> Faults:
        """Become ``sim.faults`` and serve the ``/_sim/faults`` control endpoints."""
        self.sim = sim
        sim.faults = self
        sim.add_route("GET", r"/_sim/faults", lambda r: (200, {"faults": self.list()}, {}), control=True)
        sim.add_route("POST", r"/_sim/faults", self._c_add, control=True)
        sim.add_route("DELETE", r"/_sim/faults", lambda r: (200, {"removed": self.clear()}, {}), control=True)
        sim.add_route("DELETE", r"/_sim/faults/(\d+)", self._c_remove, control=True)
        return self

    # -- switching -----------------------------------------------------------------------------
    def add(self, mode: str, **kwargs: Any) -> Fault:
        """Switch a fault on (see the module doc for modes, options and targeting); returns it."""
        targeting = {k: kwargs.pop(k) for k in _TARGETING if k in kwargs}
        with self._lock:
            fault = Fault(self._next_id, mode, kwargs, **targeting)
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) < before

    def clear(self) -> int:
        with self._lock:
            n = len(self._faults)
            self._faults = []
            return n

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def _c_add(self, req: Any) -> tuple[int, Any, dict]:
        body = req.json()
        specs = body.get("faults") if isinstance(body, dict) and "faults" in body else [body]
        if not isinstance(specs, list) or not all(isinstance(s, dict) and s.get("mode") for s in specs):
            return 422, {"message": 'expected {"mode": ..., options} or {"faults": [{"mode": ...}, ...]}'}, {}
        added = []
        try:
            for spec in specs:
                spec = dict(spec)
                spec.pop("action", None)  # Python only
                added.append(self.add(spec.pop("mode"), **spec).describe())
        except (TypeError, ValueError, re.error) as exc:
            for f in added:
                self.remove(f["id"])
            return 422, {"message": f"invalid fault: {exc}"}, {}
        return 201, {"faults": added}, {}

    def _c_remove(self, req: Any) -> tuple[int, Any, dict]:
        fault_id = int(req.match.group(1))
        if not self.remove(fault_id):
            return 404, {"message": f"no fault {fault_id}"}, {}
        return 200, {"removed": 1}, {}

    # -- the hook ------------------------------------------------------------------------------
    def before_request(self, handler: Any) -> tuple[int, Any, dict] | None:
        req = handler.sim_request
        with self._lock:
            chosen = None
            for fault in self._faults:
                if fault.matches(req) and fault.eligible():
                    chosen = fault
                    break
        if chosen is None:
            return None
        return getattr(self, f"_do_{chosen.mode}")(chosen.options, handler, req)

    # -- modes -----------------------------------------------------------------------------------
    def _answer(self, req: Any) -> tuple[int, Any, dict]:
        """What the simulator would have answered (errors included)."""
        try:
            return self.sim._api(req)
        except ApiError as err:
            return err.status, err.payload, err.headers

    def _do_status(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        status = int(o["status"])
        body = o["body"]
        if body is None:
            body = {
                429: {"message": "Too many requests. Retry later."},
                500: {"message": "Internal Server Error"},
                502: {"message": "Bad Gateway"},
                503: {"message": "Service Unavailable: Harvest is under maintenance."},
            }.get(status, {"message": f"HTTP {status}"})
        headers = {} if o["retry_after"] is None else {"Retry-After": str(o["retry_after"])}
        return status, body, headers

    def _do_unauthorized(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        return 401, dict(INVALID_TOKEN), {}

    def _do_role(self, o: dict, handler: Any, req: Any) -> None:
        _, _, token = (req.headers.get("Authorization") or "").partition(" ")
        info = self.sim.tokens.get(token.strip())
        if info is not None:
            info["role"] = str(o["role"])
        return None  # answered normally, with the new role

    def _do_slow(self, o: dict, handler: Any, req: Any) -> None:
        time.sleep(float(o["delay"]))
        return None  # then answered normally (the client may be gone: the server ignores that)

    def _do_drop(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        status, payload, headers = self._answer(req)
        body = _encode(payload)
        cut = int(len(body) * float(o["keep"]))
        _write_raw(handler, status, body, "application/json; charset=utf-8", headers, send=cut)
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sim._count_status(status)
        return 0, None, {}

    def _do_truncate(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        status, payload, headers = self._answer(req)
        body = _encode(payload)
        return status, body[: int(len(body) * float(o["keep"]))], headers

    def _do_not_json(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        status = int(o["status"])
        body = (o["body"] if o["body"] is not None else HTML_ERROR_PAGE).encode()
        _write_raw(handler, status, body, str(o["content_type"]), {})
        self.sim._count_status(status)
        return 0, None, {}

    def _do_shape(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        return 200, json.loads(json.dumps(o["body"])), {}

    def _do_page_shift(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        status, payload, headers = self._answer(req)
        state = self.sim.state
        served = payload.get("time_entries", []) if status == 200 and isinstance(payload, dict) else []
        with state.lock:  # one change, as one Harvest transaction would make it
            for entry in served[: int(o["delete_served"])]:
                state.delete_entry(entry["id"])
            for entry_id in o["delete_ids"]:
                state.delete_entry(int(entry_id))
            if served and int(o["insert_newest"]):
                top = served[0]
                for _ in range(int(o["insert_newest"])):
                    state.add_entry(top["user"]["id"], top["project"]["id"], top["spent_date"], 1.0, "inserted")
            for entry in o["insert"]:
                state.add_entry(**entry)
            if o["action"] is not None:
                o["action"](self.sim, req, payload)
        return status, payload, headers

    def _do_bad_records(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        status, payload, headers = self._answer(req)
        if status != 200 or not isinstance(payload, dict):
            return status, payload, headers
        entries = payload.get("time_entries")
        entries = entries if isinstance(entries, list) else [payload]  # a single time entry
        by_id = {e.get("id"): e for e in entries}
        for spec in o["records"]:
            if "id" in spec:
                entry = by_id.get(int(spec["id"]))
            else:
                index = int(spec.get("index", 0))
                entry = entries[index] if -len(entries) <= index < len(entries) else None
            if entry is None:
                continue
            for key, value in (spec.get("set") or {}).items():
                _set_path(entry, key, value)
            for key in spec.get("unset") or ():
                _set_path(entry, key, _MISSING)
        return status, payload, headers

    def _do_raw_records(self, o: dict, handler: Any, req: Any) -> tuple[int, Any, dict]:
        status, payload, headers = self._answer(req)
        key = str(o["key"])
        if status != 200 or not isinstance(payload, dict) or not isinstance(payload.get(key), list):
            return status, payload, headers
        payload[key] = [*([] if o["replace"] else payload[key]), *o["records"]]
        if isinstance(payload.get("total_entries"), int):
            payload["total_entries"] = len(payload[key])
        return status, raw_json(payload), headers


# -- helpers ---------------------------------------------------------------------------------------
def raw_json(value: Any) -> bytes:
    """``value`` as a JSON body, its strings as given: a lone surrogate (which UTF-8 cannot encode) becomes its
    JSON escape, exactly the text Harvest would have to send to mean it; floats as Python writes them."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "backslashreplace")


def _encode(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()


def _write_raw(
    handler: Any, status: int, body: bytes, content_type: str, headers: dict[str, str], send: int | None = None
) -> None:
    """Status line, headers (Content-Length of the whole body) and ``send`` bytes of the body."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            handler.send_header(k, v)
        handler._headers_buffer.append(b"\r\n")
        handler._headers_buffer.append(body if send is None else body[:send])
        handler.flush_headers()
    except OSError:
        pass  # the client is already gone


def _set_path(obj: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        child = obj.get(key)
        if not isinstance(child, dict):
            child = {}
            obj[key] = child
        obj = child
    if value is _MISSING:
        obj.pop(last, None)
    else:
        obj[last] = value
