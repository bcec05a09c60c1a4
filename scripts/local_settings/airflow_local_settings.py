"""Airflow local settings of `make airflow`'s stacks (scripts/airflow_local.py puts this folder on PYTHONPATH).

Two knobs, both read from the environment of each process, so a production deployment never sees them:

- ``worker_hostname``: ``[core] hostname_callable`` of each Celery worker of a local CeleryExecutor stack. The
  workers share one machine, so the machine's name cannot tell them apart; each gets a loopback address of its
  own (127.0.0.2, 127.0.0.3, ...), records it as its task instances' hostname and serves its task logs there
  (the API server reads a task's log from ``http://<hostname>:<worker_log_server_port>``).
- ``task_policy``: with ``AIRFLOW_LOCAL_RETRY_DELAY`` (seconds) every task retries after that delay instead of
  the DAG's minutes (test stacks whose tests make tasks fail on purpose); unset, nothing changes.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

WORKER_ADDRESS = "AIRFLOW_LOCAL_WORKER_ADDRESS"
RETRY_DELAY = "AIRFLOW_LOCAL_RETRY_DELAY"


def worker_hostname() -> str:
    return os.environ.get(WORKER_ADDRESS) or socket.getfqdn()


def task_policy(task: Any) -> None:
    seconds = os.environ.get(RETRY_DELAY)
    if seconds:
        task.retry_delay = dt.timedelta(seconds=float(seconds))
        task.retry_exponential_backoff = 0
