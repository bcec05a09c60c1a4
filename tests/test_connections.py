"""How many PostgreSQL connections a running task of the sync holds, counted by the server (pg_stat_activity)
while a real sync runs against the simulator: one per task, each named for what holds it."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
import pytest

from primetric_harvest.names import ConnectionUse, connection_name
from tests.fixtures import APOLLO

pytestmark = pytest.mark.db

# Every client connection to the test's own database but the test's own: nothing else uses it meanwhile.
WATCHER = "connection-count test"
SAMPLE = (
    "SELECT COALESCE(application_name, '') FROM pg_stat_activity WHERE datname = current_database() "
    f"AND backend_type = 'client backend' AND application_name IS DISTINCT FROM '{WATCHER}'"
)


class ConnectionSampler:
    """Samples the database's client connections every few milliseconds while it runs (a thread)."""

    def __init__(self, dsn: str, every: float = 0.005):
        self.dsn = dsn
        self.every = every
        self.samples: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name=WATCHER) as conn:
            while not self._stop.is_set():
                self.samples.append(sorted(r[0] for r in conn.execute(SAMPLE).fetchall()))
                self._stop.wait(self.every)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peak(self) -> int:
        return max(map(len, self.samples), default=0)

    def peak_by_name(self) -> dict[str, int]:
        peaks: Counter[str] = Counter()
        for sample in self.samples:
            for name, n in Counter(sample).items():
                peaks[name] = max(peaks[name], n)
        return dict(peaks)


def test_each_step_of_a_run_holds_one_named_connection(apollo):
    for day in range(1, 29):
        apollo.entry("bobby", 701, f"2026-02-{day:02d}", 1.5)
    apollo.entry("nina", 701, "2026-02-03", 2)  # a missing teammate: the report sends a notice too
    # While Harvest answers a listing, the extract is in the middle of its work (rate limiter, progress and
    # staging in use): count what it holds then, from the server's side.
    during_listing: list[list[str]] = []
    with psycopg.connect(apollo.dsn, autocommit=True, application_name=WATCHER) as watch:

        def count(sim, request, payload) -> None:
            during_listing.append(sorted(r[0] for r in watch.execute(SAMPLE).fetchall()))

        apollo.sim.faults.add("page_shift", path="/v2/time_entries", action=count, times=None)
        with ConnectionSampler(apollo.dsn) as sampler:
            outcome = apollo.sync(APOLLO, since="2026-01-01")
    assert outcome.loaded.inserted == 28

    extract = connection_name(ConnectionUse.EXTRACT, APOLLO)
    assert during_listing and all(names == [extract] for names in during_listing), during_listing

    peaks = sampler.peak_by_name()
    print(f"\nconnections per step of one run (peak, {len(sampler.samples)} samples): {peaks}")
    peaks.pop("", None)  # a backend still starting up has no application_name yet
    ours = {connection_name(use, APOLLO) for use in ConnectionUse if use is not ConnectionUse.DAG_PARSE}
    assert set(peaks) <= ours, f"connections that do not say what holds them: {set(peaks) - ours}"
    assert set(peaks) >= {extract, connection_name(ConnectionUse.LOAD, APOLLO)}, peaks
    assert all(n == 1 for n in peaks.values()), peaks
