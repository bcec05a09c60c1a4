"""The simulator's error answer, shared by the server and its fault modes (which import nothing else of it)."""

from __future__ import annotations

from typing import Any

Response = tuple[int, Any, dict[str, str]]  # status, JSON-able payload (or bytes), headers


class ApiError(Exception):
    """Raised by route handlers to answer an error with a JSON body."""

    def __init__(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        super().__init__(payload)
        self.status = status
        self.payload = payload
        self.headers = headers or {}
