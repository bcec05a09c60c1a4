"""Local simulator of the parts of Harvest API v2 used by the Primetric sync.

from harvest_simulator import HarvestSimulator, SimulatorState
state = SimulatorState.generate(seed=1, n_entries=10_000, n_users=20,
                                project_ids=[1001, 1002], start=date(2026, 1, 1), end=date(2026, 11, 1))
with HarvestSimulator(state) as sim:
    requests.get(f"{sim.url}/v2/users/me", headers={...})
"""

from .server import HarvestSimulator
from .state import SimulatorState

__all__ = ["HarvestSimulator", "SimulatorState"]
