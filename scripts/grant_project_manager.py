"""Let a FAB user read and trigger one project's Harvest sync only: `grant_project_manager.py USER PROJECT_ID`.

    python scripts/grant_project_manager.py alice 1        # alice manages Apollo (harvest_sync_1)
    python scripts/grant_project_manager.py alice 1 2      # ... and Zephyr

Run it where `airflow` works (the deployment's configuration and metadata database); in the docker compose
deployment: `docker compose run --rm airflow-cli python -m primetric_harvest.fab_roles alice 1`. What the role
holds and why: primetric_harvest.fab_roles (README: "Users and roles").
"""

from __future__ import annotations

import sys

from primetric_harvest.fab_roles import main

if __name__ == "__main__":
    sys.exit(main())
