"""Scale invariance: HSVs, bounds and norms under B -> a B, C -> g C, state and time scaling.

For any realization and any nonzero ``a``, ``g``::

    hsv(A, a B, g C) = |a g| hsv(A, B, C)
    ||G||_inf, ||G||_2 and every bound scale by |a g|
    hsv(T^{-1} A T, T^{-1} B, C T) = hsv(A, B, C)      (T diagonal)
    hsv(t A, t B, C) = hsv(A, B, C),   ||G||_inf unchanged,  ||G||_2 * sqrt(t)
                                                         (continuous time)

exactly in exact arithmetic.  Here ``a``, ``g`` range over 1e-150..1e150
(products up to 1e300), diagonal scalings over 1e-50..1e50 per state, and
time scalings over 1e-100..1e100: without equilibration the Hammarling
recursion over- or underflows beyond about 1e+-154 and rank and stability
thresholds move with the units.  The comparison is against the unscaled
system, each value to 1e-9 relative (to 1e-9 sigma_1 for the small HSVs).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import ctrlreduce as cr
from tests.conftest import random_stable

exponents = st.floats(-150.0, 150.0, allow_nan=False)


@st.composite
def systems(draw, discrete=None):
    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return random_stable(
        rng, n, draw(st.integers(1, 3)), draw(st.integers(1, 3)),
        complex_=draw(st.booleans()),
        discrete=draw(st.booleans()) if discrete is None else discrete,
        diagonal=draw(st.booleans()), margin=draw(st.sampled_from([0.05, 0.3])),
    )


def _close(x, ref, scale):
    """``x == ref * scale`` to 1e-9 relative, the small entries to 1e-9 of the largest."""
    x, ref = np.asarray(x, dtype=float), np.asarray(ref, dtype=float) * scale
    atol = 1e-9 * float(np.max(np.abs(ref), initial=0.0))
    np.testing.assert_allclose(x, ref, rtol=1e-9, atol=atol)


@settings(max_examples=60, deadline=None)
@given(sys=systems(), ea=exponents, eg=exponents)
def test_input_output_scaling(sys, ea, eg) -> None:
    a, g = 10.0**ea, -(10.0**eg)
    scaled = cr.StateSpace(sys.A, a * sys.B, g * sys.C, None, sys.dt)
    base = cr.StateSpace(sys.A, sys.B, sys.C, None, sys.dt)
    k = abs(a * g)
    h0 = cr.hankel_singular_values(base)
    _close(cr.hankel_singular_values(scaled), h0, k)
    r = sys.n_states // 2
    red0, red = cr.balanced_truncation(base, r), cr.balanced_truncation(scaled, r)
    _close([red.error_bound, red.lower_bound], [red0.error_bound, red0.lower_bound], k)
    _close(cr.hinf_norm(scaled), cr.hinf_norm(base), k)
    _close(cr.h2_norm(scaled), cr.h2_norm(base), k)


@settings(max_examples=40, deadline=None)
@given(sys=systems(), data=st.data())
def test_diagonal_state_scaling(sys, data) -> None:
    n = sys.n_states
    e = np.array(data.draw(st.lists(st.floats(-50.0, 50.0), min_size=n, max_size=n)))
    d = 10.0**e
    scaled = cr.StateSpace(sys.A * (1 / d)[:, None] * d[None, :], sys.B / d[:, None],
                           sys.C * d[None, :], sys.D, sys.dt)
    _close(cr.hankel_singular_values(scaled), cr.hankel_singular_values(sys), 1.0)
    assert scaled.is_stable()


@settings(max_examples=40, deadline=None)
@given(sys=systems(discrete=False), et=st.floats(-100.0, 100.0))
def test_time_scaling(sys, et) -> None:
    t = 10.0**et  # (a discrete system has no time scale to change)
    base = cr.StateSpace(sys.A, sys.B, sys.C, None, None)
    fast = cr.StateSpace(t * sys.A, t * sys.B, sys.C, None, None)
    _close(cr.hankel_singular_values(fast), cr.hankel_singular_values(base), 1.0)
    _close(cr.hinf_norm(fast), cr.hinf_norm(base), 1.0)
    _close(cr.h2_norm(fast), cr.h2_norm(base), np.sqrt(t))
    assert fast.is_stable()
