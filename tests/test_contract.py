"""The Primetric tables contract that other tools rely on: ../shared/contract-check must stay green."""

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT.parent / "shared" / "contract-check"


@pytest.mark.skipif(not CHECK.exists(), reason=f"{CHECK} is not on this machine (the workplace provides it)")
def test_contract_check_passes():
    proc = subprocess.run([str(CHECK)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout
