"""Named data sets for ``python -m harvest_simulator --scenario NAME``.

Register a zero-argument factory returning a :class:`SimulatorState` in ``SCENARIOS``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from .demo import demo
from .state import SimulatorState

# Defaults shared by the "generated" scenario and the CLI flags.
DEFAULT_SEED = 1
DEFAULT_ENTRIES = 1000
DEFAULT_USERS = 20
DEFAULT_PROJECT_IDS = (1001, 1002)
DEFAULT_START = date(2026, 1, 1)
DEFAULT_END = date(2026, 11, 1)


def generated() -> SimulatorState:
    """Small deterministic data set: 1000 entries, 20 users, projects 1001 and 1002."""
    return SimulatorState.generate(
        seed=DEFAULT_SEED,
        n_entries=DEFAULT_ENTRIES,
        n_users=DEFAULT_USERS,
        project_ids=list(DEFAULT_PROJECT_IDS),
        start=DEFAULT_START,
        end=DEFAULT_END,
    )


SCENARIOS: dict[str, Callable[[], SimulatorState]] = {
    "generated": generated,
    "demo": demo,
}
