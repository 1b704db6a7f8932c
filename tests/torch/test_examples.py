"""The shipped examples run (CI runs the test suite, so a broken example fails CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_custom_layer_example_registers_reduces_and_compresses():
    """A layer defined outside the package, registered in a few lines, is found, ranked,
    reduced by ``reduce_`` (within its bound) and trained under ``Compressor`` with cuts
    applied (the script asserts each of these and prints OK)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_layer.py"), "--quick"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "OK", proc.stdout
    assert any(line.startswith("cuts [(24, ") for line in lines), proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]
