"""Dense balanced truncation: ctrlreduce vs python-control ``balred`` vs pyMOR ``BTReductor``.

Run from the repository root::

    python benchmarks/bench_bt_dense.py [--sizes 100 400 1000] [--order 20]

For each n: a stable continuous system with 4 inputs and 4 outputs
(``benchmarks/_common.random_continuous``), reduced to ``--order`` states by
each tool in this one process.  Times are the best of 3 runs (1 for n >= 1000).
HSV error: max |hsv - ref| / ref[0], the reference being SLICOT AB09AD's
HSVs (Hammarling factors + SVD, computed through slycot); python-control's
HSVs come from ``control.hsvd`` (``sqrt(eig(P Q))``), pyMOR's from
``LTIModel.hsv()``.  NaN / complex counts are reported, never hidden.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, random_continuous, table  # noqa: E402

import ctrlreduce as cr  # noqa: E402


def _hsv_err(h, ref) -> tuple[float, int]:
    h = np.asarray(h)
    bad = int(np.count_nonzero(~np.isfinite(h) | (np.abs(np.imag(h)) > 0)))
    hr = np.sort(np.real(h))[::-1]
    # pyMOR's low-rank path can return more values than states (zeros beyond n)
    hr = np.concatenate([hr, np.zeros(max(0, ref.size - hr.size))])[: ref.size]
    with np.errstate(invalid="ignore"):
        err = float(np.nanmax(np.abs(hr - ref)) / ref[0])
    return err, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1000])
    ap.add_argument("--order", type=int, default=20)
    args = ap.parse_args(argv)

    import control
    import slycot
    from tqdm import tqdm

    try:
        from pymor.core.logger import set_log_levels
        from pymor.models.iosys import LTIModel
        from pymor.reductors.bt import BTReductor

        set_log_levels({"pymor": "ERROR"})
        logging.getLogger("pymor").setLevel(logging.ERROR)
    except ImportError:  # pragma: no cover
        LTIModel = None

    rows = []
    for n in tqdm(args.sizes, desc="sizes"):
        sys_ = random_continuous(n, 4, 4, seed=n)
        rep = 1 if n >= 1000 else 3
        r = args.order
        ref = slycot.ab09ad("C", "B", "N", n, 4, 4, sys_.A.copy(), sys_.B.copy(),
                            sys_.C.copy(), nr=r, tol=0.0)[-1]
        ref = np.asarray(ref)

        t_ours, red = best_time(lambda s=sys_: cr.balanced_truncation(s, r), rep)
        e_ours, bad_ours = _hsv_err(red.hsv, ref)

        csys = sys_.to_control()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ctrl, _ = best_time(lambda: control.balred(csys, r), rep)
            e_ctrl, bad_ctrl = _hsv_err(control.hsvd(csys), ref)

        t_pymor = e_pymor = float("nan")
        bad_pymor = ""
        if LTIModel is not None:
            # a fresh model per run: pyMOR caches Gramians on the model object
            def run_pymor(s=sys_):
                fom = LTIModel.from_matrices(s.A, s.B, s.C)
                return fom, BTReductor(fom).reduce(r)

            t_pymor, (fom, _) = best_time(run_pymor, rep)
            e_pymor, bad_pymor = _hsv_err(fom.hsv(), ref)

        rows.append({
            "n": n,
            "ours [s]": t_ours,
            "control.balred [s]": t_ctrl,
            "pyMOR BT [s]": t_pymor,
            "control/ours": t_ctrl / t_ours,
            "pyMOR/ours": t_pymor / t_ours,
            "HSV err ours": e_ours,
            "HSV err control.hsvd": e_ctrl,
            "HSV err pyMOR": e_pymor,
            "NaN/complex ours/control/pyMOR": f"{bad_ours}/{bad_ctrl}/{bad_pymor}",
        })
    print(table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
