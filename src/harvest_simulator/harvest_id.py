"""Harvest ID (id.getharvest.com) for the simulator: OAuth2 authorization code + refresh, and accounts.

Served by a :class:`~harvest_simulator.server.HarvestSimulator` under ``/_sim/id`` (its ``/_sim/`` routes
need no API token, as Harvest ID's own pages need none), so ``HarvestID(sim).url`` stands in for
``https://id.getharvest.com``:

- ``GET  {url}/oauth2/authorize?client_id=…&response_type=code&redirect_uri=…&state=…``: the consent
  page (HTML with Approve/Deny buttons) of the signed-in Harvest user ``user_id``; with
  ``consent="approve"`` or ``"deny"`` it answers at once with the redirect, as after a click.
- ``POST {url}/oauth2/authorize`` (form ``decision=approve|deny`` + the query's fields): the click;
  302 to ``redirect_uri?code=…&state=…`` or ``redirect_uri?error=access_denied&state=…``.
- ``POST {url}/api/v2/oauth2/token`` (form-encoded; client credentials in the body or HTTP Basic):
  ``grant_type=authorization_code`` (code single-use, ``code_ttl`` seconds, same ``redirect_uri``) and
  ``grant_type=refresh_token``; answers ``access_token``, ``refresh_token``, ``token_type``, ``expires_in``
  (``expires_in`` configurable; with ``rotate_refresh_tokens`` each refresh brings a new refresh token and
  the old one stops working). Errors are OAuth2's: 401 ``invalid_client``, 400 ``invalid_grant``.
- ``GET  {url}/api/v2/accounts`` (Bearer): ``{"user": {...}, "accounts": [{id, name, product}]}``.

Issued access tokens are real tokens of the simulator's ``/v2`` API (role from the user's
``access_roles``) and stop working ``expires_in`` seconds later. Test controls: :meth:`expire_after`
(the access token answers 401 after N more requests), :meth:`revoke` (refresh tokens and their access
tokens), :meth:`remove_client` (the app was deleted); ``POST /_sim/id/_control`` does the same over HTTP.
"""

from __future__ import annotations

import base64
import html
import itertools
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .api_error import ApiError, Response
from .server import DEFAULT_ACCOUNT_ID, HarvestSimulator, Request

PREFIX = "/_sim/id"
DEFAULT_CLIENT_ID = "sim-client-id"
DEFAULT_CLIENT_SECRET = "sim-client-secret"
ROLE_ORDER = ("administrator", "manager", "member")


class _ExpiringTokens(dict):
    """The simulator's token table, aware of expiry: ``get`` (what ``/v2`` auth calls) counts uses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        info = super().get(key)
        if info is None:
            return default
        with self.lock:
            expires = info.get("_expires_at")
            if info.get("_revoked") or (expires is not None and time.monotonic() >= expires):
                return default
            if info.get("_uses_left") is not None:
                if info["_uses_left"] <= 0:
                    return default
                info["_uses_left"] -= 1
        return info

    def peek(self, key: str) -> dict | None:
        """Like ``get`` without counting a use."""
        info = super().get(key)
        if info is None or info.get("_revoked") or (info.get("_uses_left") is not None and info["_uses_left"] <= 0):
            return None
        expires = info.get("_expires_at")
        return None if expires is not None and time.monotonic() >= expires else info


class HarvestID:
    """Harvest ID endpoints registered on ``sim``; attributes are the knobs tests turn."""

    def __init__(
        self,
        sim: HarvestSimulator,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        expires_in: int = 3600,
        rotate_refresh_tokens: bool = False,
        code_ttl: float = 600,
        consent: str | None = None,
        user_id: int | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        accounts: list[dict] | None = None,
    ) -> None:
        self.sim = sim
        self.clients: dict[str, str] = {client_id: client_secret}
        self.redirect_uris: dict[str, str] = {}  # client id -> the Redirect URL registered for the app
        self.expires_in = expires_in
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.code_ttl = code_ttl
        self.consent = consent  # None: show the consent page; "approve" / "deny": decide at once
        self.user_id = user_id if user_id is not None else sim.state.default_admin_id()
        self.account_id = str(account_id)  # the Harvest account the issued tokens reach on /v2
        self.accounts = accounts or [
            {"id": 7000001, "name": "Acme Forecast", "product": "forecast"},
            {"id": int(account_id), "name": "Acme", "product": "harvest"},
        ]
        self.token_delay = 0.0  # seconds the token endpoint waits before answering (races in tests)
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.token_requests: list[dict] = []  # {"grant_type", "status", "error"} per token call
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        if not isinstance(sim.tokens, _ExpiringTokens):
            sim.tokens = _ExpiringTokens(sim.tokens)
        add = sim.add_route
        add("GET", rf"{PREFIX}/oauth2/authorize", self._authorize_page, control=True)
        add("POST", rf"{PREFIX}/oauth2/authorize", self._authorize_decision, control=True)
        add("POST", rf"{PREFIX}/api/v2/oauth2/token", self._token, control=True)
        add("GET", rf"{PREFIX}/api/v2/accounts", self._accounts, control=True)
        add("POST", rf"{PREFIX}/_control", self._control, control=True)

    @property
    def url(self) -> str:
        return self.sim.url + PREFIX

    # ------------------------------------------------------------------ test controls
    def register_app(self, name: str, redirect_uri: str) -> tuple[str, str]:
        """What id.getharvest.com/developers does: a new OAuth2 app; its (client id, client secret)."""
        client_id = f"sim-app-{next(self._serial)}"
        secret = secrets.token_urlsafe(24)
        self.clients[client_id] = secret
        self.redirect_uris[client_id] = redirect_uri
        return client_id, secret

    def live_access_tokens(self) -> list[str]:
        return [t for t, info in list(self.sim.tokens.items()) if info.get("_oauth") and self.sim.tokens.peek(t)]

    def expire_after(self, n: int, token: str | None = None) -> list[str]:
        """The access token (default: every live one issued here) answers 401 after ``n`` more requests."""
        tokens = [token] if token else self.live_access_tokens()
        with self.sim.tokens.lock:
            for t in tokens:
                self.sim.tokens[t]["_uses_left"] = int(n)
        return tokens

    def revoke(self, refresh_token: str | None = None) -> int:
        """Revoke one refresh token (default: all) and the access tokens issued from its grant."""
        with self._lock:
            grants = {
                info["grant"]
                for rt, info in self.refresh_tokens.items()
                if refresh_token is None or rt == refresh_token
            }
            count = 0
            for info in self.refresh_tokens.values():
                if info["grant"] in grants and not info["revoked"]:
                    info["revoked"] = True
                    count += 1
        with self.sim.tokens.lock:
            for info in self.sim.tokens.values():
                if info.get("_grant") in grants:
                    info["_revoked"] = True
        return count

    def remove_client(self, client_id: str | None = None) -> None:
        """The OAuth2 application was deleted at id.getharvest.com/developers."""
        for cid in [client_id] if client_id else list(self.clients):
            self.clients.pop(cid, None)
        self.revoke()

    def valid_refresh_tokens(self) -> list[str]:
        with self._lock:
            return [rt for rt, info in self.refresh_tokens.items() if not info["revoked"]]

    def grants(self, grant_type: str, status: int | None = 200) -> int:
        """How many token calls of ``grant_type`` answered ``status`` (None: any)."""
        return sum(
            1
            for r in self.token_requests
            if r["grant_type"] == grant_type and (status is None or r["status"] == status)
        )

    # ------------------------------------------------------------------ helpers
    def _user(self) -> dict:
        try:
            return self.sim.state.get_user(int(self.user_id))
        except (KeyError, TypeError):
            raise ApiError(500, {"message": f"simulated Harvest ID user {self.user_id} does not exist"}) from None

    def _role(self, user: dict) -> str:
        roles = user.get("access_roles") or []
        return next((r for r in ROLE_ORDER if r in roles), "member")

    @staticmethod
    def _form(req: Request) -> dict[str, str]:
        ctype = (req.headers.get("Content-Type") or "").lower()
        if "json" in ctype:
            body = req.json()
            return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        return dict(parse_qsl(req.body.decode(), keep_blank_values=True))

    @staticmethod
    def _redirect(uri: str, **params: str) -> Response:
        parts = urlsplit(uri)
        query = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in params.items() if v is not None]
        return 302, b"", {"Location": urlunsplit(parts._replace(query=urlencode(query))), "Cache-Control": "no-store"}

    def _check_authorize_params(self, params: dict[str, str]) -> None:
        if params.get("client_id") not in self.clients:
            raise ApiError(400, _page("Unknown application", "No OAuth2 application has this client_id."), _HTML)
        if params.get("response_type") != "code":
            raise ApiError(400, _page("Unsupported response_type", "Only response_type=code is supported."), _HTML)
        if not params.get("redirect_uri", "").startswith(("http://", "https://")):
            raise ApiError(400, _page("Bad redirect_uri", "redirect_uri must be an http(s) URL."), _HTML)
        registered = self.redirect_uris.get(params["client_id"])
        if registered and params["redirect_uri"] != registered:
            raise ApiError(400, _page("Bad redirect_uri", "redirect_uri is not the application's Redirect URL."), _HTML)

    def _decide(self, params: dict[str, str], decision: str) -> Response:
        redirect_uri, state = params["redirect_uri"], params.get("state")
        if decision != "approve":
            return self._redirect(redirect_uri, error="access_denied", state=state)
        code = f"sim-code-{secrets.token_urlsafe(16)}"
        with self._lock:
            self.codes[code] = {
                "client_id": params["client_id"],
                "redirect_uri": redirect_uri,
                "user_id": self.user_id,
                "expires_at": time.monotonic() + self.code_ttl,
                "used": False,
            }
        return self._redirect(redirect_uri, code=code, state=state)

    def expire_codes(self) -> None:
        with self._lock:
            for info in self.codes.values():
                info["expires_at"] = 0.0

    # ------------------------------------------------------------------ routes
    def _authorize_page(self, req: Request) -> Response:
        params = dict(req.query)
        self._check_authorize_params(params)
        if self.consent in ("approve", "deny"):
            return self._decide(params, self.consent)
        user = self._user()
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        body = (
            f"<h1>Authorize application</h1><p>Signed in to Harvest as <b>{html.escape(user['email'])}</b>.</p>"
            f"<p>The application <b>{html.escape(params['client_id'])}</b> wants to access your Harvest "
            f"accounts.</p><form method='post'>{hidden}"
            "<button type='submit' name='decision' value='approve' id='approve'>Authorize application</button> "
            "<button type='submit' name='decision' value='deny' id='deny'>Deny</button></form>"
        )
        return 200, _page("Harvest ID — authorize", body, raw=True), _HTML

    def _authorize_decision(self, req: Request) -> Response:
        form = self._form(req)
        params = {k: v for k, v in form.items() if k != "decision"}
        self._check_authorize_params(params)
        return self._decide(params, form.get("decision", "deny"))

    def _client(self, req: Request, form: dict[str, str]) -> str:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = req.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                client_id = None
        if not client_id or self.clients.get(client_id) is None or self.clients[client_id] != secret:
            raise ApiError(401, {"error": "invalid_client", "error_description": "Client authentication failed."})
        return client_id

    def _issue(self, client_id: str, user_id: int, grant: int, refresh_token: str | None) -> dict:
        user = self.sim.state.get_user(int(user_id))
        access = f"sim-at-{next(self._serial)}-{secrets.token_urlsafe(18)}"
        self.sim.tokens[access] = {
            "account_id": self.account_id,
            "role": self._role(user),
            "user_id": int(user_id),
            "_oauth": True,
            "_grant": grant,
            "_expires_at": time.monotonic() + self.expires_in,
        }
        if refresh_token is None:
            refresh_token = f"sim-rt-{next(self._serial)}-{secrets.token_urlsafe(18)}"
            self.refresh_tokens[refresh_token] = {
                "client_id": client_id,
                "user_id": int(user_id),
                "grant": grant,
                "revoked": False,
            }
        return {
            "access_token": access,
            "refresh_token": refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }

    def _token(self, req: Request) -> Response:
        form = self._form(req)
        grant_type = form.get("grant_type", "")
        record = {"grant_type": grant_type, "status": 200, "error": None}
        try:
            if self.token_delay:
                time.sleep(self.token_delay)
            client_id = self._client(req, form)
            with self._lock:
                if grant_type == "authorization_code":
                    payload = self._code_grant(client_id, form)
                elif grant_type == "refresh_token":
                    payload = self._refresh_grant(client_id, form)
                else:
                    raise ApiError(400, {"error": "unsupported_grant_type", "error_description": grant_type})
        except ApiError as err:
            record.update(status=err.status, error=err.payload.get("error"))
            raise
        finally:
            self.token_requests.append(record)
        return 200, payload, {"Cache-Control": "no-store"}

    def _code_grant(self, client_id: str, form: dict[str, str]) -> dict:
        info = self.codes.get(form.get("code", ""))
        if info is None or info["used"] or info["client_id"] != client_id:
            raise ApiError(400, {"error": "invalid_grant", "error_description": "The authorization code is invalid."})
        if time.monotonic() >= info["expires_at"]:
            raise ApiError(400, {"error": "invalid_grant", "error_description": "The authorization code expired."})
        if form.get("redirect_uri") and form["redirect_uri"] != info["redirect_uri"]:
            raise ApiError(400, {"error": "invalid_grant", "error_description": "redirect_uri does not match."})
        info["used"] = True
        return self._issue(client_id, info["user_id"], next(self._serial), None)

    def _refresh_grant(self, client_id: str, form: dict[str, str]) -> dict:
        old = form.get("refresh_token", "")
        info = self.refresh_tokens.get(old)
        if info is None or info["revoked"] or info["client_id"] != client_id:
            raise ApiError(400, {"error": "invalid_grant", "error_description": "The refresh token is invalid."})
        if self.rotate_refresh_tokens:
            info["revoked"] = True
            return self._issue(client_id, info["user_id"], info["grant"], None)
        return self._issue(client_id, info["user_id"], info["grant"], old)

    def _accounts(self, req: Request) -> Response:
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        info = self.sim.tokens.peek(token.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            raise ApiError(401, {"error": "invalid_token", "error_description": "The access token is invalid."})
        user = self.sim.state.get_user(int(info["user_id"]))
        return (
            200,
            {
                "user": {
                    "id": user["id"],
                    "first_name": user["first_name"],
                    "last_name": user["last_name"],
                    "email": user["email"],
                },
                "accounts": list(self.accounts),
            },
            {},
        )

    def _control(self, req: Request) -> Response:
        """``{"consent", "expires_in", "rotate_refresh_tokens", "user_id", "expire_after", "revoke",
        "remove_client", "expire_codes"}`` — each optional."""
        body = req.json()
        for key in ("consent", "expires_in", "rotate_refresh_tokens", "user_id"):
            if key in body:
                setattr(self, key, body[key])
        result: dict[str, Any] = {}
        if body.get("expire_after") is not None:
            result["expiring"] = len(self.expire_after(int(body["expire_after"])))
        if body.get("revoke"):
            result["revoked"] = self.revoke(None if body["revoke"] is True else str(body["revoke"]))
        if body.get("remove_client"):
            self.remove_client()
        if body.get("expire_codes"):
            self.expire_codes()
        return 200, {"ok": True, **result}, {}


# The simulator answers with application/json first; a second Content-Type wins in browsers (the last
# one is used) and names the page for humans reading headers.
_HTML = {"Content-Type": "text/html; charset=utf-8"}


def _page(title: str, body: str, raw: bool = False) -> bytes:
    content = body if raw else f"<h1>{html.escape(title)}</h1><p>{html.escape(body)}</p>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:40em;margin:2em auto'>{content}</body></html>"
    ).encode()
