"""Fuzzing the public API of the core: bad input gets TypeError/ValueError, never NaN out.

Two properties, over every public function and method of ``ctrlreduce``:

1. A valid call with one argument replaced by a bad value (wrong type, NaN,
   Inf, wrong shape or rank, out-of-range number, bool for a number, string
   for a flag, an unstable system, ...) either succeeds or raises
   ``TypeError`` or ``ValueError`` -- no ``AttributeError``, ``LinAlgError``,
   ``IndexError``, ``ZeroDivisionError``, ``OverflowError`` or anything else.
2. For finite input, at any scale from 1e-300 to 1e300, whatever is returned
   contains no NaN: an answer that is not representable is a ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctrlreduce as cr

S = cr.StateSpace
GOOD = S([[-1.0, 0.5], [0.0, -2.0]], [[1.0], [1.0]], [[1.0, 0.0]], [[0.0]])
GOOD_D = S([[0.5, 0.1], [0.0, -0.3]], [[1.0], [0.5]], [[1.0, 1.0]], None, 0.1)
UNSTABLE = S([[1.0, 0.0], [0.0, -1.0]], [[1.0], [1.0]], [[1.0, 1.0]])

BAD_VALUES: list[Any] = [
    None, "x", "", b"x", True, False, 1.5, -1, 0, 3, 10**30, -0.0, float("nan"), float("inf"),
    -float("inf"), 1j, [], [[]], [1.0, 2.0], [[1.0], [1.0, 2.0]], np.zeros((2, 3)),
    np.zeros((0, 0)), np.ones((2, 2, 2)), np.full((2, 2), np.nan), np.full((2, 1), np.inf),
    np.array([["a", "b"], ["c", "d"]]), np.eye(2) * 1e308, np.eye(3), object(), {"a": 1},
    UNSTABLE, GOOD_D, np.int64(1), np.float64(np.nan), np.array(1.0), Path("/nonexistent"),
]

ALLOWED = (TypeError, ValueError)
FUZZ_EXAMPLES = int(os.environ.get("CTRLREDUCE_FUZZ_EXAMPLES", "400"))  # more: set it higher


def _calls(tmp: Path) -> list[tuple[str, Any, list[Any], dict[str, Any]]]:
    """``(name, function, args, kwargs)`` of valid baseline calls."""
    red = cr.balanced_truncation(GOOD, 1)
    return [
        ("StateSpace", S, [GOOD.A, GOOD.B, GOOD.C, GOOD.D], {"dt": None}),
        ("evaluate", GOOD.evaluate, [[0.0, 1j]], {}),
        ("freqresp", GOOD.freqresp, [[0.0, 1.0]], {}),
        ("unstable_poles", GOOD.unstable_poles, [0.0], {}),
        ("static_gain", S.static_gain, [[[1.0]]], {"dt": None}),
        ("from_scipy", S.from_scipy, [GOOD.to_scipy()], {}),
        ("from_control", S.from_control, [GOOD.to_control()], {}),
        ("add", GOOD.__add__, [GOOD], {}),
        ("sub", GOOD.__sub__, [GOOD], {}),
        ("with_matrices", GOOD.with_matrices, [], {"A": GOOD.A}),
        ("hankel_singular_values", cr.hankel_singular_values, [GOOD],
         {"unstable": "raise", "alpha": 0.0}),
        ("gramians", cr.gramians, [GOOD], {"factor": False}),
        ("balanced_truncation", cr.balanced_truncation, [GOOD, 1],
         {"method": "sr", "elimination": "truncate", "unstable": "raise", "alpha": 0.0}),
        ("balanced_truncation_tol", cr.balanced_truncation, [GOOD], {"tol": 0.1}),
        ("balanced_realization", cr.balanced_realization, [GOOD], {}),
        ("minimal_realization", cr.minimal_realization, [GOOD], {"tol": 1e-10}),
        ("h2_norm", cr.h2_norm, [GOOD], {"gramian": "controllability"}),
        ("hinf_norm", cr.hinf_norm, [GOOD], {"rtol": 1e-10, "return_frequency": False}),
        ("reduction_error", cr.reduction_error, [GOOD, red.system], {"rtol": 1e-10}),
        ("lyapunov_cholesky", cr.lyapunov_cholesky, [GOOD.A, GOOD.B],
         {"dt": None, "method": "auto"}),
        ("solve_lyapunov", cr.solve_lyapunov, [GOOD.A, np.eye(2)], {"dt": None}),
        ("stable_unstable_split", cr.stable_unstable_split, [GOOD], {"alpha": 0.0}),
        ("stable_error_system", cr.stable_error_system, [GOOD, red.system], {}),
        ("tail_bound", cr.tail_bound, [[3.0, 2.0, 1.0], 1], {"distinct": False}),
        ("load", cr.load, [tmp / "g.npz"], {}),
        ("save", cr.save, [tmp / "out.npz", GOOD], {}),
        ("certify", red.certify, [], {"rtol": 1e-10}),
    ]


def _no_nan(value: Any, where: str) -> None:
    """Recursively: no NaN in arrays, floats, tuples, StateSpace or result dataclasses."""
    if isinstance(value, (float, complex, np.floating, np.complexfloating)):
        assert not np.isnan(value), where
    elif isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        assert not np.any(np.isnan(value)), where
    elif isinstance(value, (tuple, list)):
        for v in value:
            _no_nan(v, where)
    elif isinstance(value, S):
        for M in (value.A, value.B, value.C, value.D):
            _no_nan(M, where)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _no_nan(getattr(value, f.name), f"{where}.{f.name}")


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> list:
    tmp = tmp_path_factory.mktemp("fuzz")
    cr.save(tmp / "g.npz", GOOD)
    return _calls(tmp)


def test_baseline_calls_succeed(calls) -> None:
    for name, fn, args, kwargs in calls:
        _no_nan(fn(*args, **kwargs), name)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_arguments_raise_only_type_or_value_errors(calls, data) -> None:
    name, fn, args, kwargs = data.draw(st.sampled_from(calls), label="function")
    slots = [("arg", i) for i in range(len(args))] + [("kw", k) for k in kwargs]
    if not slots:
        return
    kind, key = data.draw(st.sampled_from(slots), label="slot")
    bad = data.draw(st.sampled_from(BAD_VALUES), label="bad value")
    args, kwargs = list(args), dict(kwargs)
    if kind == "arg":
        args[key] = bad
    else:
        kwargs[key] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = fn(*args, **kwargs)
        except ALLOWED:
            return
        except Exception as exc:  # noqa: BLE001 - the property under test
            pytest.fail(f"{name} with {kind} {key!r} = {bad!r} raised "
                        f"{type(exc).__name__}: {exc}")
    _no_nan(out, name)


@st.composite
def scaled_systems(draw):
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    discrete = draw(st.booleans())
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    if discrete:
        A = 0.9 * A / max(1.0, float(np.max(np.abs(np.linalg.eigvals(A)))))
    else:
        A = A - (float(np.max(np.linalg.eigvals(A).real)) + 0.2) * np.eye(n)
    ea, eb, ec = (draw(st.floats(-150, 150)) for _ in range(3))
    et = 0.0 if discrete else draw(st.floats(-150, 150))
    B = rng.standard_normal((n, 2)) * 10.0**eb
    C = rng.standard_normal((2, n)) * 10.0**ec
    D = rng.standard_normal((2, 2)) * 10.0**ea if discrete else None
    return S(A * 10.0**et, B, C, D, 1.0 if discrete else None)


@settings(max_examples=60, deadline=None)
@given(sys=scaled_systems())
def test_finite_input_never_gives_nan(sys) -> None:
    funcs = [
        ("hsv", lambda: cr.hankel_singular_values(sys)),
        ("gramians", lambda: cr.gramians(sys, factor=True)),
        ("bt", lambda: cr.balanced_truncation(sys, sys.n_states // 2)),
        ("matchdc", lambda: cr.balanced_truncation(sys, sys.n_states // 2, elimination="matchdc")),
        ("h2", lambda: cr.h2_norm(sys)),
        ("hinf", lambda: cr.hinf_norm(sys, return_frequency=True)),
        ("minreal", lambda: cr.minimal_realization(sys, tol=1e-10)),
        ("split", lambda: cr.stable_unstable_split(sys)),
        ("evaluate", lambda: sys.evaluate([0.5j, 2.0])),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, f in funcs:
            try:
                out = f()
            except ValueError as exc:  # allowed: overflow of a result, or a pole hit
                assert "overflows" in str(exc) or "pole" in str(exc), (name, exc)
                continue
            _no_nan(out, name)
