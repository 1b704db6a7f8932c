"""HSVs and in-place reduction of a 6-layer LRU stack at the paper's sCIFAR size.

Compares, for every layer of a stack of ``--layers`` LRUs (``d_model=512``,
``d_state=384``: real maps of order 768 with 512 inputs and outputs):

* ``ctrlreduce_torch.hankel_singular_values``: closed-form Gramians in real
  coordinates, batched Cholesky and ``svdvals``, on the layer's device; once
  layer by layer and once for all layers stacked into one batch;
* the dense per-layer core path ``ctrlreduce.hankel_singular_values`` on
  ``to_lti(layer).complex_statespace()[0]``, the layer's input-output map in
  complex diagonal coordinates (diagonal Hammarling factors, dense SVD);
* a per-layer SciPy path: ``scipy.linalg.solve_discrete_lyapunov`` for both
  Gramians of the augmented system, then ``sqrt(eig(P Q))``;

then times ``ctrlreduce_torch.reduce_`` of every layer to ``--order``.

Run::

    python benchmarks/bench_adapter_hsv.py            # CUDA when available
    python benchmarks/bench_adapter_hsv.py --device cpu --scipy-layers 1
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import scipy.linalg
import torch
from ctrlreduce_torch._lti import DiagonalLTI
from ctrlreduce_torch.convert import to_lti
from ctrlreduce_torch.hsv import hankel_singular_values
from ctrlreduce_torch.lru import LRU
from ctrlreduce_torch.reduce import reduce_

import ctrlreduce


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def scipy_hsv(sys: ctrlreduce.StateSpace) -> np.ndarray:
    """``sqrt(eig(P Q))`` with both Gramians from ``solve_discrete_lyapunov``."""
    A, B, C = sys.A, sys.B, sys.C
    P = scipy.linalg.solve_discrete_lyapunov(A, B @ B.conj().T)
    Q = scipy.linalg.solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    ev = np.linalg.eigvals(P @ Q)
    return np.sort(np.sqrt(np.abs(ev.real)))[::-1]


def stack(ltis: list[DiagonalLTI]) -> DiagonalLTI:
    return DiagonalLTI(*(torch.cat([getattr(x, f) for x in ltis]) for f in ("lam", "B", "C", "D")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--d-state", type=int, default=384)
    ap.add_argument("--order", type=int, default=96)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--scipy-layers", type=int, default=None,
                    help="run the (slow) SciPy path on this many layers (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="timing runs of reduce_ (best, median)")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="time only the batched paths and reduce_ (the dense baselines are slow)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    layers = [
        LRU(args.d_model, args.d_state, r_min=0.9, r_max=0.999, max_phase=6.28).to(device)
        for _ in range(args.layers)
    ]
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})"
                                 if device.type == "cuda" else ""))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"{args.layers} x LRU(d_model={args.d_model}, d_state={args.d_state}), "
          f"real-map order {2 * args.d_state}, parameters float32")

    with torch.no_grad():
        ltis = [to_lti(layer) for layer in layers]
    hankel_singular_values(ltis[0])  # warm-up (kernels, allocator)

    t_ours, ours = _timed(lambda: [hankel_singular_values(x)[0] for x in ltis], device, 3)
    t_stack, stacked = _timed(lambda: hankel_singular_values(stack(ltis)), device, 3)
    t_layers, _ = _timed(lambda: [hankel_singular_values(layer) for layer in layers], device, 3)
    ours_np = [h.cpu().numpy() for h in ours]
    print("\nHSVs of all layers (real input-output maps)")
    print(f"  ours, per layer (from DiagonalLTI)    {t_ours:8.3f} s")
    print(f"  ours, per layer (from the layers)     {t_layers:8.3f} s   (includes to_lti)")
    print(f"  ours, all layers in one batch         {t_stack:8.3f} s")
    d_stack = disagreement(stacked.cpu().numpy(), ours_np)
    print(f"  max |stacked - per layer| / sigma_1   {d_stack:.1e}")
    if not args.skip_baselines:
        baselines(ltis, ours_np, t_ours, t_stack, args, device)
    reduce_section(layers, args, device)


def disagreement(a, b) -> float:
    """max over layers of max |a - b| / b[0]."""
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max() / np.asarray(y)[0])
        for x, y in zip(a, b, strict=True)
    )


def baselines(ltis, ours_np, t_ours, t_stack, args, device) -> None:
    systems = [x.complex_statespace()[0] for x in ltis]  # the map, diagonal
    t_dense, dense = _timed(lambda: [ctrlreduce.hankel_singular_values(s) for s in systems],
                            device)
    n_sp = len(systems) if args.scipy_layers is None else min(args.scipy_layers, len(systems))
    t_sp, sp = _timed(lambda: [scipy_hsv(s) for s in systems[:n_sp]], device)
    t_sp_all = t_sp * len(systems) / max(n_sp, 1)
    note = "" if n_sp == len(systems) else f"  (measured on {n_sp} layer(s), scaled)"
    print(f"  dense core, per layer                 {t_dense:8.3f} s   "
          f"-> speed-up {t_dense / t_ours:5.1f}x (batched: {t_dense / t_stack:5.1f}x)")
    print(f"  SciPy Lyapunov + sqrt(eig), per layer {t_sp_all:8.3f} s   "
          f"-> speed-up {t_sp_all / t_ours:5.1f}x{note}")
    print(f"  max |ours - dense core| / sigma_1     {disagreement(ours_np, dense):.1e}")
    print(f"  max |SciPy - dense core| / sigma_1    {disagreement(sp, dense[:n_sp]):.1e}")


def reduce_section(layers, args, device) -> None:
    # reduce_ changes the layers: time it on fresh copies, best and median of --repeat
    times, reports = [], []
    for _ in range(args.repeat):
        stack_copy = copy.deepcopy(layers)
        _sync(device)
        t0 = time.perf_counter()
        reports = [reduce_(layer, args.order) for layer in stack_copy]
        _sync(device)
        times.append(time.perf_counter() - t0)
    print(f"\nreduce_ of all {args.layers} layers to d_state {args.order}: "
          f"best {min(times):.3f} s, median {float(np.median(times)):.3f} s "
          f"over {args.repeat} runs "
          f"(last run per layer: {', '.join(f'{r.seconds:.3f}' for r in reports)} s)")
    print(f"  applied: {[r.applied for r in reports]}, method: {reports[0].method}")
    print(f"  error bounds (relative to sigma_1): "
          f"{', '.join(f'{r.error_bound / float(r.hsv[0, 0]):.2f}' for r in reports)}")
    print(f"  realization error (float32 write-back): "
          f"{max(r.realization_error for r in reports):.1e}")


if __name__ == "__main__":
    main()
