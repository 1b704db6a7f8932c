"""Diagonal linear recurrences, fast and slow, and the precision rules of the layers.

Glossary
--------
==========  ===========  =========================================================
``lam``     (S,)         complex eigenvalues of the recurrence, ``|lam| < 1``
``log_lam`` (S,)         a complex logarithm of ``lam`` (``lam = exp(log_lam)``);
                         the scans take it, so powers ``lam^k = exp(k log_lam)``
                         are exact elementwise and never overflow
``X``       (S, b, L)    complex input sequence ``B u[k]``, state-major (time last)
``x``       (S, b, L)    states ``x[k] = lam * x[k-1] + X[k]``, ``x[-1] = 0``
``T``                    chunk length of the blocked scan
==========  ===========  =========================================================

Every layer in this package runs the recurrence with the state updated
*before* the output is read (the LRU/S5/S4D convention)::

    x[k] = lam * x[k-1] + B u[k],      y[k] = Re(C x[k]) + D u[k].

The fast scan never loops over time in Python.  The sequence is cut into
chunks of ``T`` steps; inside a chunk the states are one contraction with the
lower-triangular powers matrix ``W[t, j] = lam^(t-j)`` (``t >= j``); the chunk
end states are then themselves a diagonal recurrence with eigenvalues
``lam^T``, which is scanned the same way (recursion depth
``ceil(log_T(L))``), and each chunk adds ``lam^(t+1)`` times the state that
entered it.  Only non-negative powers of ``lam`` appear, so nothing overflows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "DEFAULT_CHUNK",
    "autocast_dtype",
    "check_input",
    "compute_dtype",
    "diagonal_scan",
    "mimo_forward",
    "mimo_forward_sequential",
    "precision",
    "run_in_compute_dtype",
    "sequential_scan",
]

#: Chunk length of :func:`diagonal_scan`: 16-64 measured within noise of each
#: other on CPU for (b, L, H, N) = (32, 64, 64, 64) and (16, 1024, 128, 256).
DEFAULT_CHUNK = 32


def _powers(log_lam: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``lam^k = exp(k log_lam)``, shape ``(S, len(k))``."""
    return torch.exp(log_lam[:, None] * k.to(log_lam.real.dtype)[None, :])


def diagonal_scan(
    log_lam: torch.Tensor, X: torch.Tensor, *, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """States of ``x[k] = exp(log_lam) * x[k-1] + X[k]`` from ``x[-1] = 0`` (state-major).

    Parameters
    ----------
    log_lam : torch.Tensor, complex, shape (S,)
        Logarithms of the eigenvalues (any branch).
    X : torch.Tensor, complex, shape (S, b, L)
        Inputs ``B u`` with the state axis first and time last (this layout
        makes every product below a contiguous batched matrix product).
    chunk : int, optional
        Chunk length ``T``.

    Returns
    -------
    torch.Tensor, complex, shape (S, b, L)
        ``x[s, :, k] = sum_{j <= k} lam_s^(k-j) X[s, :, j]``.

    Notes
    -----
    Work ``O(S b L T)`` in batched matrix products plus ``O(S b L)``
    elementwise; memory ``O(S T^2 + S b L)``.  Differentiable.
    """
    S, b, L = X.shape
    if L == 0:
        return X
    T = min(chunk, L)
    nc = -(-L // T)
    if nc * T != L:
        X = torch.cat([X, X.new_zeros(S, b, nc * T - L)], dim=2)
    pw = _powers(log_lam, torch.arange(T + 1, device=X.device))  # (S, T+1): lam^0 .. lam^T
    t = torch.arange(T, device=X.device)
    lag = t[None, :] - t[:, None]  # [j, t] = t - j
    WT = pw[:, lag.clamp(min=0)] * (lag >= 0)  # (S, T, T): [s, j, t] = lam^(t-j), t >= j
    x = torch.bmm(X.reshape(S, b * nc, T), WT)  # (S, b nc, T): states within each chunk
    if nc > 1:
        x = x.reshape(S, b, nc, T)
        ends = diagonal_scan(T * log_lam, x[..., -1], chunk=chunk)  # (S, b, nc): true chunk ends
        enter = torch.cat([ends.new_zeros(S, b, 1), ends[..., :-1]], dim=2)  # state entering
        x = x + enter[..., None] * pw[:, None, None, 1:]  # + lam^(t+1) x_in
    return x.reshape(S, b, nc * T)[..., :L]


def sequential_scan(log_lam: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """The same states as :func:`diagonal_scan` by a plain loop over time (test oracle)."""
    lam = torch.exp(log_lam)[:, None]
    x = X.new_zeros(X.shape[:2])
    out = []
    for k in range(X.shape[2]):
        x = lam * x + X[..., k]
        out.append(x)
    if not out:
        return X
    return torch.stack(out, dim=2)


def _project_in(u: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``B u[k]`` for real ``u (b, L, H)`` and complex ``B (S, H)``: state-major ``(S, b, L)``."""
    b, L, H = u.shape
    uT = u.permute(2, 0, 1).reshape(H, b * L)
    return torch.complex(B.real @ uT, B.imag @ uT).reshape(B.shape[0], b, L)


def _project_out(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``Re(C x[k])`` for state-major complex ``x (S, b, L)`` and ``C (H, S)``: ``(b, L, H)``.

    ``Re(C x) = [Re C, -Im C] [Re x; Im x]``, contracted over the real view of ``x``
    (cheaper in backward than ``x.real`` / ``x.imag``).
    """
    S, b, L = x.shape
    xr = torch.view_as_real(x).reshape(S, b * L, 2)
    Cst = torch.stack([C.real, -C.imag], dim=-1)  # (H, S, 2)
    yT = torch.einsum("hsr,snr->hn", Cst, xr)  # (H, b L)
    return yT.reshape(C.shape[0], b, L).permute(1, 2, 0)


def mimo_forward(
    u: torch.Tensor,
    log_lam: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``y[k] = Re(C x[k]) + D * u[k]``, ``x[k] = lam * x[k-1] + B u[k]`` (fast scan).

    Shapes: ``u (b, L, H)``, ``log_lam (S,)``, ``B (S, H)``, ``C (H, S)``,
    ``D (H,)`` (diagonal feedthrough); returns ``(b, L, H)``.  The work is
    proportional to ``S``: a layer with fewer states runs faster.  An empty
    batch or sequence gives an empty output of the same shape.
    """
    if u.numel() == 0:
        return u * D
    x = diagonal_scan(log_lam, _project_in(u, B), chunk=chunk)
    return _project_out(x, C) + u * D


def mimo_forward_sequential(
    u: torch.Tensor, log_lam: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """:func:`mimo_forward` with the Python loop over time of :func:`sequential_scan`."""
    if u.numel() == 0:
        return u * D
    x = sequential_scan(log_lam, _project_in(u, B))
    return _project_out(x, C) + u * D


# ----------------------------------------------------------------------------
# the layer input
# ----------------------------------------------------------------------------


def check_input(u: Any, d_model: int) -> torch.Tensor:
    """Validate a layer input ``u (batch, length, d_model)``, a real floating tensor."""
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"u must be a torch.Tensor, got {type(u).__name__}")
    if not (u.is_floating_point()):
        raise TypeError(f"u must be a real floating tensor, got dtype {u.dtype}")
    if u.dim() != 3 or u.shape[-1] != d_model:
        raise ValueError(
            f"u must have shape (batch, length, d_model={d_model}), got shape {tuple(u.shape)}"
        )
    return u


# ----------------------------------------------------------------------------
# precision: what the layers compute in, and what they return
# ----------------------------------------------------------------------------


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype of an active ``torch.autocast`` region on ``device_type``, else ``None``."""
    try:
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError, RuntimeError):  # torch < 2.4, or no autocast there
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        return None


def compute_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 parameters, float32 for every other dtype (see :func:`precision`)."""
    return torch.float64 if param_dtype == torch.float64 else torch.float32


def precision(device_type: str, param_dtype: torch.dtype) -> tuple[torch.dtype, torch.dtype]:
    """``(compute dtype, output dtype)`` of a layer with parameters in ``param_dtype``.

    The recurrence (and S4D's FFT) always runs in float32/complex64 or better:
    float64 parameters compute in float64, every other dtype (float32,
    float16, bfloat16) in float32, since half precision cannot hold
    ``lam^k`` over long sequences (and CPUs have no complex-half kernels).
    The output is the active autocast dtype inside ``torch.autocast``
    (except for float64 layers, which autocast leaves alone, as it leaves
    every float64 op), else the parameters' dtype.
    """
    compute = compute_dtype(param_dtype)
    amp = autocast_dtype(device_type)
    if amp is not None and param_dtype != torch.float64:
        return compute, amp
    return compute, param_dtype


def run_in_compute_dtype(
    u: Any, d_model: int, param_dtype: torch.dtype, fn: Callable[..., torch.Tensor]
) -> torch.Tensor:
    """``fn(u_c, compute_dtype)`` for a checked ``u``, with autocast off; cast to the output dtype.

    See :func:`precision`.  Inside ``torch.autocast`` the products of the
    scan would otherwise be cast down to half precision; here autocast is
    disabled for the recurrence, which then runs in the compute dtype.
    """
    u = check_input(u, d_model)
    compute, out = precision(u.device.type, param_dtype)
    ctx = (
        torch.autocast(u.device.type, enabled=False)
        if autocast_dtype(u.device.type) is not None
        else contextlib.nullcontext()
    )
    with ctx:
        y = fn(u.to(compute), compute)
    return y.to(out)
