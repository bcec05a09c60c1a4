"""What the figures were measured on."""

from __future__ import annotations

import os
import platform

import psutil


def describe() -> dict:
    model = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo").read().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    server = "unknown"
    try:
        import psycopg

        dsn = os.environ.get("PRIMETRIC_DSN", "postgresql://postgres@127.0.0.1:5432")
        with psycopg.connect(f"{dsn}/postgres", connect_timeout=3) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
    except Exception:  # noqa: BLE001 - the header is informative only
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "postgresql": server,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
