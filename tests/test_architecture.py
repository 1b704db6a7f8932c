"""Architecture rules: the core never imports torch; slycot is optional; no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


# ----------------------------------------------------------- import structure
# Optional dependencies may be imported inside functions (they may be absent);
# everything else is imported at the top of the module that needs it.
OPTIONAL = {"slycot", "control", "matplotlib", "lightning", "pytorch_lightning",
            "transformers", "mambapy", "mnist1d", "tqdm", "sklearn"}


def _modules(package_dir: Path) -> dict[str, ast.Module]:
    return {
        p.relative_to(package_dir).with_suffix("").as_posix().replace("/", "."): ast.parse(
            p.read_text(), filename=str(p)
        )
        for p in sorted(package_dir.rglob("*.py"))
    }


def _resolve(current: str, node: ast.ImportFrom, names: set[str]) -> list[str]:
    """Sibling modules a relative ``from . import`` / ``from .x import`` refers to."""
    if node.level == 0:
        return []
    parts = current.split(".")
    is_pkg = parts[-1] == "__init__"
    base = parts[:-1] if not is_pkg else parts[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    target = ".".join([*base, *(node.module.split(".") if node.module else [])])
    found = []
    if target in names:
        found.append(target)
    elif f"{target}.__init__" in names:
        found.append(f"{target}.__init__")
    for alias in node.names:  # from . import _x
        sub = f"{target}.{alias.name}" if target else alias.name
        if sub in names:
            found.append(sub)
    return found


def _graph(package_dir: Path) -> dict[str, set[str]]:
    mods = _modules(package_dir)
    names = set(mods)
    graph: dict[str, set[str]] = {}
    for name, tree in mods.items():
        deps: set[str] = set()
        for node in tree.body:  # top-level imports only: those run at import time
            if isinstance(node, ast.ImportFrom):
                deps.update(_resolve(name, node, names))
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _function_level_imports(package_dir: Path) -> list[str]:
    bad = []
    for name, tree in _modules(package_dir).items():
        for top in tree.body:
            if isinstance(top, (ast.Import, ast.ImportFrom, ast.If, ast.Try)):
                continue  # module level (incl. TYPE_CHECKING / optional-import guards)
            for node in ast.walk(top):
                if isinstance(node, ast.Import):
                    roots = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    roots = ["." if node.level else (node.module or "").split(".")[0]]
                else:
                    continue
                for root in roots:
                    if root not in OPTIONAL:
                        bad.append(f"{name}:{node.lineno} imports {root!r} inside a function")
    return bad


PACKAGES = [ROOT / "ctrlreduce", ROOT / "adapters" / "ctrlreduce_torch"]


@pytest.mark.parametrize("package_dir", PACKAGES, ids=lambda p: p.name)
def test_no_import_cycle(package_dir: Path) -> None:
    assert _cycles(_graph(package_dir)) == []


@pytest.mark.parametrize("package_dir", PACKAGES, ids=lambda p: p.name)
def test_no_function_level_import_except_optional(package_dir: Path) -> None:
    assert _function_level_imports(package_dir) == []


def test_cycle_detector_finds_a_cycle(tmp_path: Path) -> None:
    """The checker itself: a two-module cycle and a function-level import are found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_a.py").write_text("from ._b import g\n\ndef f():\n    import numpy\n")
    (pkg / "_b.py").write_text("from ._a import f\n")
    assert _cycles(_graph(pkg)) == [["_a", "_b"]]
    assert _function_level_imports(pkg) == ["_a:4 imports 'numpy' inside a function"]


# ----------------------------------------------------------- the adapters' layout
ADAPTERS = ROOT / "adapters" / "ctrlreduce_torch"


def test_library_needs_torch_only_and_never_imports_the_demo():
    """``import ctrlreduce_torch`` and a reduction work with the demo's dependencies
    (scikit-learn, tqdm) and the optional ones blocked; the demo is not imported."""
    code = """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split('.')[0] in ('sklearn', 'tqdm', 'lightning', 'matplotlib'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        import torch
        import ctrlreduce_torch as crt
        layer = crt.LRU(3, 6).double()
        assert crt.reduce_(layer, 3).applied
        assert not any(m.startswith('ctrlreduce_torch.demo') for m in sys.modules)
        print('ok')
    """
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_adapters_never_read_the_shared_folder():
    """No package code reads ``../shared`` (the benchmark data belongs to the repository)."""
    offenders = [
        f"{p.relative_to(ADAPTERS)}:{i}"
        for p in ADAPTERS.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if '"shared"' in line or "'shared'" in line or "/shared" in line
    ]
    assert offenders == []


def test_family_knowledge_lives_in_the_family_files():
    """Only a family's own file (and the package's re-exports) names its layer class or its
    parameters: everything else goes through the registry (``family_of``)."""
    families = {"lru.py": ("LRU", "nu_log"), "s5.py": ("S5", "Lambda_re_log"),
                "s4d.py": ("S4D", "log_A_real")}
    offenders = []
    for path in ADAPTERS.rglob("*.py"):
        if path.name in families or path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {a.attr for a in ast.walk(tree) if isinstance(a, ast.Attribute)}
        strings = {c.value for c in ast.walk(tree)
                   if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        for cls, param in families.values():
            if cls in names or param in names or param in strings:
                offenders.append(f"{path.relative_to(ADAPTERS)} uses {cls}/{param}")
    assert offenders == []
