"""Architecture rules: the core never imports torch; slycot is optional."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT
    )


def test_core_imports_and_works_without_torch_or_slycot():
    code = """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split('.')[0] in ('torch', 'slycot', 'ctrlreduce_torch'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import ctrlreduce as cr
        import ctrlreduce.cli, ctrlreduce.plot  # the optional modules too
        s = cr.StateSpace(np.diag([-1.0, -2.0]), np.ones((2, 1)), np.ones((1, 2)))
        red = cr.balanced_truncation(s, 1)
        assert red.system.n_states == 1
        assert not any(m.split('.')[0] in ('torch', 'slycot') for m in sys.modules)
        print('ok')
    """
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_core_source_has_no_torch_import():
    offenders = []
    for path in (ROOT / "ctrlreduce").rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import torch", "from torch")):
                offenders.append(f"{path.name}: {s}")
    assert not offenders, offenders
