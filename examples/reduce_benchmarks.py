"""Reduce every SLICOT benchmark system at a few orders and print bound vs measured error.

Run from the repository root (needs ``../shared/data/mor-benchmarks``)::

    python examples/reduce_benchmarks.py
"""

from __future__ import annotations

from pathlib import Path

import ctrlreduce as cr

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mor-benchmarks"


def main() -> None:
    print(f"{'system':12s} {'n':>5s} {'r':>4s} {'sigma_r+1':>11s} {'measured':>11s} {'bound':>11s}")
    for name in ["build", "CDplayer", "heat-cont", "iss1R", "beam"]:
        sys = cr.load(DATA / f"{name}.mat")
        for r in (5, 10, 20):
            red = cr.balanced_truncation(sys, r)
            cert = red.certify()
            print(
                f"{name:12s} {sys.n_states:5d} {r:4d} {red.lower_bound:11.4g} "
                f"{cert.error:11.4g} {red.error_bound:11.4g}"
            )


if __name__ == "__main__":
    main()
