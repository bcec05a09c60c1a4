"""CLI: ``python -m harvest_simulator --port 8123 --entries 1000 ...`` (runs until SIGINT/SIGTERM)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import date

from .scenarios import (
    DEFAULT_END,
    DEFAULT_ENTRIES,
    DEFAULT_PROJECT_IDS,
    DEFAULT_SEED,
    DEFAULT_START,
    DEFAULT_USERS,
    SCENARIOS,
)
from .server import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, HarvestSimulator
from .state import SimulatorState


def _rate_limit(text: str) -> tuple[int, float]:
    count, _, window = text.partition("/")
    try:
        return int(count), float(window or 15)
    except ValueError:
        raise argparse.ArgumentTypeError("expected N/SECONDS, e.g. 100/15") from None


def _project_ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated integers") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harvest_simulator", description="Local Harvest API v2 simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    p.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        help="named data set (ignores the generation flags)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    p.add_argument("--users", type=int, default=DEFAULT_USERS)
    p.add_argument(
        "--projects",
        type=_project_ids,
        default=list(DEFAULT_PROJECT_IDS),
        help="e.g. 1001,1002",
    )
    p.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START)
    p.add_argument("--end", type=date.fromisoformat, default=DEFAULT_END)
    p.add_argument(
        "--rate-limit",
        nargs="?",
        type=_rate_limit,
        const=(100, 15.0),
        default=None,
        metavar="N/SECONDS",
        help="enable Harvest's rate limit (default 100/15 when given without a value)",
    )
    p.add_argument("--token", default=DEFAULT_TOKEN)
    p.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    p.add_argument(
        "--role",
        default="administrator",
        choices=["administrator", "manager", "member"],
    )
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.scenario:
        state = SCENARIOS[args.scenario]()
    else:
        state = SimulatorState.generate(
            seed=args.seed,
            n_entries=args.entries,
            n_users=args.users,
            project_ids=args.projects,
            start=args.start,
            end=args.end,
        )
    tokens = {
        args.token: {
            "account_id": str(args.account_id),
            "role": args.role,
            "user_id": state.default_admin_id(),
        }
    }
    sim = HarvestSimulator(
        state,
        host=args.host,
        port=args.port,
        tokens=tokens,
        rate_limit=args.rate_limit,
        verbose=args.verbose,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sim.start()
    print(f"Harvest simulator on {sim.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
