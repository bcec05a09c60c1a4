"""Airflow's own REST API, called with the signed-in user's token: the page can do exactly what the user may.

The token is the caller's (``Authorization: Bearer`` header, else the UI's ``_token`` cookie); it is passed on
to /api/v2 and never stored, logged or shown.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class AirflowApiError(Exception):
    """An /api/v2 call answered with an error: its status and Airflow's own message."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def caller_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return request.cookies.get(COOKIE)


def api_base(request: Request) -> str:
    """Where /api/v2 answers: HARVEST_UI_AIRFLOW_API_URL, else [api] base_url, else the request's host."""
    explicit = os.environ.get("HARVEST_UI_AIRFLOW_API_URL")
    if explicit:
        return explicit.rstrip("/")
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    if base.startswith(("http://", "https://")):
        return base.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{base.rstrip('/')}"


def ui_root() -> str:
    """Path of the Airflow UI's root ('/' or '/airflow/'), for links from the page to DAGs and runs."""
    from airflow.configuration import conf

    path = urllib.parse.urlsplit(conf.get("api", "base_url", fallback="") or "").path
    return path.rstrip("/") + "/"


def _detail(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:500] or answer.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


@dataclass
class AirflowApi:
    base: str
    token: str

    @classmethod
    def for_request(cls, request: Request) -> AirflowApi:
        token = caller_token(request)
        if not token:
            raise AirflowApiError(401, "not signed in to Airflow")
        return cls(api_base(request), token)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with httpx.Client(base_url=self.base, timeout=TIMEOUT) as client:
            answer = client.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
        if answer.status_code >= 400:
            raise AirflowApiError(answer.status_code, _detail(answer))
        return answer.json()

    def dags(self, pattern: str = "harvest_sync_") -> dict[str, dict]:
        body = self._call("GET", "/api/v2/dags", params={"dag_id_pattern": pattern, "limit": 1000})
        return {d["dag_id"]: d for d in body["dags"]}

    def dag(self, dag_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}")

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict) -> dict:
        # logical_date must be present (null: "now"), else 422.
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})

    def runs(self, dag_id: str, limit: int = 5) -> list[dict]:
        body = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": limit})
        return body["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
