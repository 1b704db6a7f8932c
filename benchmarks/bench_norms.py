"""H-infinity norm: ctrlreduce ``hinf_norm`` vs python-control ``norm(sys, "inf")``.

Run from the repository root (one BLAS thread, for figures that compare)::

    OMP_NUM_THREADS=1 python benchmarks/bench_norms.py [--sizes 50 200 800] [--repeat 3]

For each n: a stable continuous system with 4 inputs and 4 outputs
(``benchmarks/_common.random_continuous``, seed = n).  Columns:

* ``ours_s``: ``ctrlreduce._norms.hinf_norm(sys)`` (``rtol=1e-10``);
* ``control_s``: ``control.norm(sys, "inf")``, i.e. slycot ``ab13dd`` with
  python-control's default ``tol=1e-6``;
* ``ratio``: ``control_s / ours_s`` (above 1: ours is faster);
* ``rel_diff``: ``|ours - control| / control``;
* ``ab13dd_1e-10_s`` and ``rel_diff_1e-10``: the same against
  ``control.linfnorm(sys, tol=1e-10)``, ab13dd at our accuracy.

Times are the best of ``--repeat`` runs (1 run for n >= 800).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, random_continuous, table  # noqa: E402

from ctrlreduce._norms import hinf_norm  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 800])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--outputs", type=int, default=4)
    args = ap.parse_args(argv)

    import control

    rows = []
    for n in args.sizes:
        sys_ = random_continuous(n, args.inputs, args.outputs, seed=n)
        csys = sys_.to_control()
        rep = 1 if n >= 800 else args.repeat
        t_ours, g = best_time(lambda s=sys_: hinf_norm(s), rep)
        t_ctrl, gc = best_time(lambda c=csys: float(control.norm(c, "inf")), rep)
        t_tight, gt = best_time(lambda c=csys: float(control.linfnorm(c, tol=1e-10)[0]), rep)
        rows.append({
            "n": n,
            "ours_s": t_ours,
            "control_s": t_ctrl,
            "ratio": t_ctrl / t_ours,
            "rel_diff": abs(g - gc) / gc,
            "ab13dd_1e-10_s": t_tight,
            "rel_diff_1e-10": abs(g - gt) / gt,
            "norm": g,
        })
        print(f"n={n}: done", flush=True)
    print(table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
