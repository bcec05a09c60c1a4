"""Harvest's rate limit (100 requests per 15 s per account) shared by every task on every worker."""

from __future__ import annotations

import contextlib
import time

import psycopg

from primetric_harvest.db import one_row, query

BURST = 2


class PostgresRateLimiter:
    """A token bucket in harvest_sync.rate_limit: each request reserves a slot in one statement.

    Paced at (limit - BURST - 1) per window with a burst of BURST, so no sliding window of Harvest's
    length ever holds more than the limit, whichever processes sent the requests.

    ``conn`` is in autocommit, so the bucket's row lock lasts one statement. ``turns``: held around that statement
    when the connection is shared with another thread's transactions (the extract's staging COPY), so the
    statement never runs inside one of them.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        account_id: str,
        requests_per_window: int = 100,
        window_seconds: float = 15.0,
        sleep=time.sleep,
        turns: contextlib.AbstractContextManager | None = None,
    ):
        self.conn = conn  # autocommit: the row lock lasts one statement
        self.turns = turns if turns is not None else contextlib.nullcontext()
        self.params = {
            "account_id": account_id,
            "burst": BURST,
            "rate": max(1, requests_per_window - BURST - 1) / window_seconds,
        }
        self.sleep = sleep
        self.waited = 0.0

    def acquire(self) -> None:
        with self.turns:
            (wait,) = one_row(self.conn.execute(query("rate_limit", "reserve"), self.params))
        if wait > 0:
            self.waited += wait
            self.sleep(wait)
