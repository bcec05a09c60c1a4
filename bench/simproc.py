"""The Harvest simulator in a process of its own, driven over a pipe (its CPU must not count as ours)."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
from dataclasses import dataclass

TOKEN = "bench-token"
ACCOUNT_ID = "424242"


@dataclass(frozen=True)
class SimSpec:
    n_entries: int
    n_users: int
    project_ids: tuple[int, ...]
    start: dt.date
    end: dt.date
    rate_limit: tuple[int, float] | None = None
    seed: int = 7


def _serve(conn, spec: SimSpec) -> None:  # runs in the simulator's process
    import numpy as np

    from harvest_simulator import HarvestSimulator, SimulatorState

    state = SimulatorState.generate(
        seed=spec.seed,
        n_entries=spec.n_entries,
        n_users=spec.n_users,
        project_ids=list(spec.project_ids),
        start=spec.start,
        end=spec.end,
    )
    admin = state.default_admin_id()
    sim = HarvestSimulator(
        state,
        tokens={TOKEN: {"account_id": ACCOUNT_ID, "role": "administrator", "user_id": admin}},
        rate_limit=spec.rate_limit,
    ).start()
    conn.send({"url": sim.url})
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "stop":
                break
            if cmd == "stats":
                conn.send(sim.stats)
            elif cmd == "reset":
                sim.reset_stats()
                sim.reset_rate_limit()
                conn.send(None)
            elif cmd == "rate_limit":
                sim.rate_limit = arg
                sim.reset_rate_limit()
                conn.send(None)
            elif cmd == "users":
                users = state.users_df()
                conn.send(
                    [
                        (int(i), e, list(r), bool(a))
                        for i, e, r, a in zip(
                            users["id"], users["email"], users["access_roles"], users["is_active"], strict=True
                        )
                    ]
                )
            elif cmd == "count":  # entries Harvest would list: {project_id: n} from a spent_date on
                with state.lock:
                    conn.send({p: len(state.select_entries(project_id=p, from_date=arg)) for p in spec.project_ids})
            elif cmd == "change":  # change a fraction of the entries (hours), as people do
                fraction, seed = arg
                with state.lock:
                    ids = state.column("id").copy()
                    hours = state.column("hours").copy()
                rng = np.random.default_rng(seed)
                picked = rng.choice(len(ids), size=max(1, int(len(ids) * fraction)), replace=False)
                for k in picked:
                    h = float(hours[k])
                    state.update_entry(int(ids[k]), hours=h + 0.25 if h <= 23 else h - 0.25)
                conn.send(len(picked))
            else:
                conn.send(ValueError(f"unknown simulator command {cmd!r}"))
    finally:
        sim.stop()


class SimProcess:
    """``with SimProcess(spec) as sim: sim.url, sim.call("stats")``; the process ends on exit."""

    def __init__(self, spec: SimSpec):
        self.spec = spec
        self.rate_limit = spec.rate_limit
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, spec), name="harvest-simulator", daemon=True)

    def __enter__(self) -> SimProcess:
        self.process.start()
        if not self._conn.poll(120):
            self.close()
            raise RuntimeError("the Harvest simulator process did not start within 120 s")
        self.url = self._conn.recv()["url"]
        return self

    def call(self, cmd: str, arg=None, timeout: float = 600):
        if cmd == "rate_limit":
            self.rate_limit = arg
        self._conn.send((cmd, arg))
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the Harvest simulator did not answer {cmd!r} within {timeout} s")
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def connection(self) -> dict:
        """Airflow connection ``harvest_default`` (JSON form) pointing at this simulator.

        Without a rate limit on the simulator the connection says so (``rate_limit_requests``), as an
        operator would for an account with a higher limit; with one, Harvest's default applies."""
        extra = {"account_id": ACCOUNT_ID, "timeout": 60}
        if self.rate_limit is None:
            extra["rate_limit_requests"] = 1_000_000
        return {"conn_type": "http", "host": self.url, "password": TOKEN, "extra": extra}

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(("stop", None))
            except (BrokenPipeError, OSError):
                pass
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)

    def __exit__(self, *exc) -> None:
        self.close()
