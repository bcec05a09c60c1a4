"""The "Install Harvest" page: Primetric's three-step install of the Harvest integration, in Airflow.

1. The page shows the Name and the exact Redirect URL to give a new OAuth2 application at
   id.getharvest.com/developers.
2. The administrator enters the Client ID and Client secret Harvest then shows (and, under "Advanced",
   the Harvest API / Harvest ID URLs, which only tests change).
3. "Authorize" sends the browser to Harvest with a random ``state``; Harvest sends it back to
   ``/callback``, which checks the state (CSRF), exchanges the code (requests-oauthlib), picks the
   Harvest account (asks when there are several), checks the token is a Harvest administrator's, stores
   the ``harvest_default`` connection and says so.

Between steps the pending install (state, client secret, later the tokens) lives in a short-lived
cookie encrypted with Airflow's Fernet key, bound to the Airflow user who started it: nothing is kept in
the API server's memory, so it works with several API server workers or replicas.

Every route requires an Airflow administrator (:mod:`primetric_harvest.web_auth`): anonymous browsers
are sent to the login page, others get 401/403. Only Airflow's own UI may frame the pages (``frame-ancestors
'self'``), form posts from another origin are refused, and each ``state`` Harvest sends back is accepted once,
on the server (``harvest_sync.oauth_states``): a replayed callback with the same cookie is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from primetric_harvest import oauth_install as install
from primetric_harvest import web_look
from primetric_harvest.harvest_api import DEFAULT_BASE_URL, DEFAULT_ID_URL
from primetric_harvest.names import HARVEST_CONN_ID
from primetric_harvest.oauth_tokens import HarvestOAuthError, encrypt, fernet, mask
from primetric_harvest.web_auth import login_redirect, own_origins, protect_pages, require_admin, user_name

PENDING_COOKIE = "harvest_install"
PENDING_TTL = 900  # seconds an install may take from "Authorize" to the end

app = FastAPI(title="Install Harvest", docs_url=None, redoc_url=None, openapi_url=None)
protect_pages(app)
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=jinja2.select_autoescape(default=True),
)
_templates.globals["airflow_look"] = web_look.HEAD


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("app_name", install.APP_NAME)
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


@app.exception_handler(HTTPException)
async def _auth_errors(request: Request, exc: HTTPException) -> Response:
    """Browsers without a session go to Airflow's login page; everyone else gets a plain refusal."""
    if exc.status_code == 401 and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        return login_redirect(request)
    return render("error.html", status_code=exc.status_code, title="Not allowed", message=str(exc.detail), retry=False)


# --------------------------------------------------------------------------- helpers
def page_base(request: Request) -> str:
    """External URL of this app: [api] base_url's scheme and host when configured (behind a proxy), else the
    request's; plus the mount path (root_path holds Airflow's base path and our prefix)."""
    from airflow.configuration import conf

    configured = (conf.get("api", "base_url", fallback="") or "").strip()
    origin = f"{request.url.scheme}://{request.url.netloc}"
    if configured and "://" in configured:
        scheme, rest = configured.split("://", 1)
        origin = f"{scheme}://{rest.split('/', 1)[0]}"
    return origin + request.scope.get("root_path", "").rstrip("/")


def redirect_uri(request: Request) -> str:
    return page_base(request) + "/callback"


def _cookie_path(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/") or "/"


def _save_pending(response: Response, request: Request, pending: dict) -> None:
    pending["t"] = time.time()
    response.set_cookie(
        PENDING_COOKIE,
        encrypt(json.dumps(pending)),
        max_age=PENDING_TTL,
        path=_cookie_path(request),
        httponly=True,
        secure=page_base(request).startswith("https://"),
        samesite="lax",  # sent on the top-level navigation back from Harvest, not on cross-site posts
    )


def _drop_pending(response: Response, request: Request) -> Response:
    response.delete_cookie(PENDING_COOKIE, path=_cookie_path(request))
    return response


def _load_pending(request: Request, user: Any) -> dict:
    from cryptography.fernet import InvalidToken

    raw = request.cookies.get(PENDING_COOKIE)
    if not raw:
        raise HarvestOAuthError(
            "No installation is in progress in this browser (it expires after 15 minutes): start again."
        )
    try:
        pending = json.loads(fernet().decrypt(raw.encode(), ttl=PENDING_TTL))
    except (InvalidToken, ValueError):
        raise HarvestOAuthError("The installation in progress has expired or is unreadable: start again.") from None
    if pending.get("user") != user_name(user):
        raise HarvestOAuthError("This installation was started by another Airflow user: start again.")
    mask(pending.get("client_secret"), pending.get("refresh_token"), pending.get("access_token"))
    return pending


def _same_origin(request: Request) -> None:
    """Refuse form posts from another origin (the Lax session cookie already keeps cross-site ones out)."""
    origin = (request.headers.get("origin") or "").rstrip("/")
    allowed = own_origins(request) | {"/".join(page_base(request).split("/")[:3])}
    if origin and origin not in allowed:
        raise HTTPException(403, f"Cross-site form post from {origin[:100]} refused.")


def _shadowed_message(shadow: str) -> str:
    return (
        f"The environment variable {shadow} defines connection {HARVEST_CONN_ID!r} on this server and hides the one "
        "this page would store, so an install here can never take effect: remove the variable (on every Airflow "
        "component), restart them, and reload this page."
    )


def _error(request: Request, message: str, status_code: int = 400) -> HTMLResponse:
    return _drop_pending(
        render("error.html", status_code=status_code, title="Harvest was not installed", message=message, retry=True),
        request,
    )


Admin = Annotated[Any, Depends(require_admin)]


# --------------------------------------------------------------------------- routes
@app.get("/", response_class=HTMLResponse)
def index(request: Request, user: Admin) -> HTMLResponse:
    status = install.installation_status()
    return render(
        "install.html",
        shadowed=_shadowed_message(status.shadowed_by) if status.shadowed_by else None,
        user=user_name(user),
        redirect_url=redirect_uri(request),
        status=status,
        api_url=status.api_url or DEFAULT_BASE_URL,
        id_url=status.id_url,
        client_id=status.client_id or "",
    )


@app.post("/authorize")
def authorize(
    request: Request,
    user: Admin,
    client_id: Annotated[str, Form()] = "",
    client_secret: Annotated[str, Form()] = "",
    api_url: Annotated[str, Form()] = DEFAULT_BASE_URL,
    id_url: Annotated[str, Form()] = DEFAULT_ID_URL,
) -> Response:
    _same_origin(request)
    client_id, client_secret = client_id.strip(), client_secret.strip()
    mask(client_secret)
    shadow = install.connection_shadowed_by_env(HARVEST_CONN_ID)
    if shadow:
        return _error(request, _shadowed_message(shadow), status_code=409)
    if not client_id or not client_secret:
        return _error(request, "Enter both the Client ID and the Client secret Harvest shows for your application.")
    for label, value in (("Client ID", client_id), ("Client secret", client_secret)):
        if not install.looks_like_credential(value):
            return _error(
                request,
                f"The {label} holds a space or a character Harvest's {label}s never have: copy it again from "
                "id.getharvest.com/developers (the whole value, nothing around it).",
            )
    api_url, id_url = api_url.strip(), id_url.strip()
    for label, url in (("Harvest API URL", api_url), ("Harvest ID URL", id_url)):
        refusal = install.url_refusal(label, url)
        if refusal:
            return _error(request, refusal)
    state = install.new_state()
    target = install.authorization_url(client_id, redirect_uri(request), state, id_url.strip().rstrip("/"))
    response = RedirectResponse(target, status_code=303)
    _save_pending(
        response,
        request,
        {
            "state": state,
            "user": user_name(user),
            "client_id": client_id,
            "client_secret": client_secret,
            "api_url": api_url.strip().rstrip("/"),
            "id_url": id_url.strip().rstrip("/"),
            "redirect_uri": redirect_uri(request),
        },
    )
    return response


@app.get("/callback")
def callback(
    request: Request,
    user: Admin,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> Response:
    try:
        pending = _load_pending(request, user)
        if not state or state != pending["state"]:
            raise HarvestOAuthError(
                "The answer from Harvest does not belong to the installation started in this browser (state "
                "mismatch, a possible cross-site request forgery): nothing was stored. Start again."
            )
        if not install.claim_state(state):
            raise HarvestOAuthError(
                "This answer from Harvest was already used (a reloaded or replayed callback): nothing was stored "
                "this time. Start again if the installation did not finish."
            )
        if error:
            reason = "you denied access" if error == "access_denied" else (error_description or error)
            raise HarvestOAuthError(f"Harvest did not authorize the integration: {reason}. Nothing was stored.")
        if not code:
            raise HarvestOAuthError("Harvest sent no authorization code back: start again.")
        tokens = install.exchange_code(
            pending["client_id"], pending["client_secret"], code, pending["redirect_uri"], pending["id_url"]
        )
        harvest_user, accounts = install.harvest_accounts(tokens.access_token, pending["id_url"])
        if not accounts:
            raise HarvestOAuthError(
                f"The Harvest user {harvest_user.get('email', '')} has no Harvest account (only other products): "
                "sign in to Harvest with a user of the account to sync and authorize again."
            )
        pending.update(access_token=tokens.access_token, refresh_token=tokens.refresh_token or "")
        if not tokens.refresh_token:
            raise HarvestOAuthError("Harvest sent no refresh token: the integration could not renew its access.")
        if len(accounts) == 1:
            return finish(request, user, pending, accounts[0])
        pending["accounts"] = [{"id": str(a["id"]), "name": a.get("name", "")} for a in accounts]
        response = render("choose_account.html", accounts=pending["accounts"], email=harvest_user.get("email", ""))
        _save_pending(response, request, pending)
        return response
    except HarvestOAuthError as exc:
        return _error(request, str(exc))


@app.post("/account")
def choose_account(request: Request, user: Admin, account_id: Annotated[str, Form()] = "") -> Response:
    _same_origin(request)
    try:
        pending = _load_pending(request, user)
        if not install.claim_state(pending["state"] + ":account"):
            raise HarvestOAuthError("The account of this installation was already chosen: start again.")
        chosen = [a for a in pending.get("accounts") or [] if a["id"] == account_id.strip()]
        if not chosen:
            raise HarvestOAuthError(f"Account {account_id!r} is not one the authorization gave access to.")
        return finish(request, user, pending, chosen[0])
    except HarvestOAuthError as exc:
        return _error(request, str(exc))


def finish(request: Request, user: Any, pending: dict, account: dict) -> Response:
    account_id = str(account["id"])
    me = install.check_administrator(pending["access_token"], account_id, pending["api_url"])
    install.save_connection(
        HARVEST_CONN_ID,
        client_id=pending["client_id"],
        client_secret=pending["client_secret"],
        refresh_token=pending["refresh_token"],
        account_id=account_id,
        api_url=pending["api_url"],
        id_url=pending["id_url"],
        installed_by=user_name(user),
    )
    response = render(
        "success.html",
        account_id=account_id,
        account_name=account.get("name", ""),
        email=me.get("email", ""),
        conn_id=HARVEST_CONN_ID,
    )
    return _drop_pending(response, request)
