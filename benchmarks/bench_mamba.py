"""Mamba state reduction on CPU: step times, and how well index rankings choose a cut.

A small ``transformers`` ``MambaForCausalLM`` (2 layers, hidden 64, built from a config,
nothing downloaded) learns the character-level task of ``ctrlreduce_torch.mamba.data``
(CPython's ``pydoc_data.topics``, split by topic groups; validation in bits per character).

``--quick`` (the first measurement, minutes):

1. *Step time.*  One training step (forward, cross-entropy, backward, AdamW) at the
   full state size and at the cut size, on both CPU paths of ``transformers``: the
   fallback (a Python loop over time; backward quadratic in the length) and
   ``use_mambapy=True`` (the parallel scan of ``mambapy``).  Median over
   ``--timing-steps`` steps after one warm-up step.
2. *Ranking check.*  Per seed, train the full-size model for ``--steps`` steps (on the
   first of ``--paths``), then cut it to ``--keep-frac`` of its states with each
   ranking and report validation bits per character right after the cut (no
   fine-tuning):

   ``hsv``        mean LTI surrogate, HSV energy of each index alone (``W_nn``, diag)
   ``hsv-greedy`` the same energy, greedy on its quadratic form
   ``h2``         mean LTI surrogate, output power (greedy)
   ``exact``      the exact calibration energy of each mixer's output (greedy)
   ``random``     uniform random indices (seeded)
   ``first``      indices ``0 .. r-1`` (the public re-implementation's choice)

   with the share of the surrogate's HSV energy and of the exact energy each cut drops.
   ``--sweep 3 6 12 24 48`` also cuts to each of these sizes with ``--sweep-rankings``,
   to see whether the loss increase is ordered by the dropped energy.

The full benchmark (full size vs in-training compression vs small from scratch, several
seeds, both paths, loss against wall-clock time) will be added as ``--full`` when the
``Compressor`` handles Mamba; ``train`` below already takes a per-step callback for it.

    python benchmarks/bench_mamba.py --quick                     # defaults below
    python benchmarks/bench_mamba.py --quick --seeds 0 1 2 --steps 400 --out mamba.json
    python benchmarks/bench_mamba.py --quick --seeds 0 --paths mambapy --sweep 3 6 12 24 48

Prints Markdown tables; ``--out`` writes every number as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from _common import table  # benchmarks/ is on sys.path when run as a script
from ctrlreduce_torch.mamba import (
    bits_per_char,
    cut_mamba_,
    dropped_fraction,
    index_energies,
    load_pydoc_corpus,
    sample_windows,
    select_keep,
)
from tqdm import tqdm

PATHS = ("fallback", "mambapy")
RANKINGS = ("hsv", "hsv-greedy", "h2", "exact", "random", "first")


@dataclass(frozen=True)
class Setup:
    """Model and training sizes shared by every run."""

    hidden: int = 64
    layers: int = 2
    state: int = 64
    batch: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 20
    eval_seq_len: int = 128
    eval_windows: int | None = None
    calib_batch: int = 8
    calib_seq_len: int = 128


def build_model(setup: Setup, vocab: int, state: int, path: str, seed: int):
    """A ``MambaForCausalLM`` built from a config (no download), seeded."""
    from transformers import MambaConfig, MambaForCausalLM

    cfg = MambaConfig(
        vocab_size=vocab, hidden_size=setup.hidden, state_size=state,
        num_hidden_layers=setup.layers, use_mambapy=(path == "mambapy"),
        pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )
    torch.manual_seed(seed)
    return MambaForCausalLM(cfg)


def set_path(model, path: str) -> None:
    """Switch a built model between the fallback and the mambapy scan."""
    model.config.use_mambapy = path == "mambapy"
    for m in model.modules():
        if hasattr(m, "use_mambapy"):
            m.use_mambapy = path == "mambapy"


def make_optimizer(model, setup: Setup) -> tuple[torch.optim.Optimizer, object]:
    opt = torch.optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=setup.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(setup.warmup, 1))
    )
    return opt, sched


def train(
    model,
    corpus,
    setup: Setup,
    steps: int,
    seed: int,
    callback: Callable[[int, float, float], None] | None = None,
    desc: str = "train",
) -> list[dict]:
    """``steps`` AdamW steps on random train windows; returns per-step records.

    ``callback(step, loss, elapsed_s)`` runs after each optimizer step (the hook the
    in-training compressor will use).
    """
    model.train()
    opt, sched = make_optimizer(model, setup)
    gen = torch.Generator().manual_seed(1000 + seed)
    records, t0 = [], time.perf_counter()
    for step in tqdm(range(steps), desc=desc, leave=False):
        x = sample_windows(corpus.train, setup.batch, setup.seq_len, gen)
        loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        elapsed = time.perf_counter() - t0
        records.append({"step": step + 1, "loss": loss.item(), "time_s": elapsed})
        if callback is not None:
            callback(step + 1, records[-1]["loss"], elapsed)
    return records


def valid_bpc(model, corpus, setup: Setup) -> float:
    model.eval()
    return bits_per_char(
        lambda x: model(x, use_cache=False).logits, corpus.valid,
        seq_len=setup.eval_seq_len, batch_size=16, max_windows=setup.eval_windows,
    )


def step_times(setup: Setup, corpus, path: str, state: int, n: int) -> list[float]:
    """Wall time of ``n`` training steps after one warm-up step."""
    model = build_model(setup, corpus.vocab_size, state, path, seed=0)
    model.train()
    opt, _ = make_optimizer(model, setup)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(n + 1):
        x = sample_windows(corpus.train, setup.batch, setup.seq_len, gen)
        t0 = time.perf_counter()
        loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i > 0:
            times.append(time.perf_counter() - t0)
    return times


def rank_keeps(model, calib, r: int, ranking: str, seed: int) -> list[torch.Tensor]:
    """The kept indices of each mixer for ``ranking``."""
    n_layers = model.config.num_hidden_layers
    N = model.config.state_size
    if ranking == "first":
        return [torch.arange(r)] * n_layers
    if ranking == "random":
        gen = torch.Generator().manual_seed(10_000 + seed)
        return [torch.sort(torch.randperm(N, generator=gen)[:r]).values for _ in range(n_layers)]
    kind = ranking.split("-")[0]
    method = "diag" if ranking == "hsv" else "greedy"
    return select_keep(index_energies(model, calib, kind), r, method)


def quick(args: argparse.Namespace, setup: Setup) -> dict:
    corpus = load_pydoc_corpus()
    r = max(1, round(args.keep_frac * setup.state))
    out: dict = {"setup": asdict(setup), "r": r, "timing": [], "cuts": [], "full": [],
                 "sweep": []}
    print(f"corpus: {len(corpus.train)} train / {len(corpus.valid)} valid chars, "
          f"vocab {corpus.vocab_size}; valid topics {', '.join(corpus.valid_topics)}")
    # 1. step times
    for path in args.paths:
        for state in (setup.state, r):
            ts = step_times(setup, corpus, path, state, args.timing_steps)
            med = statistics.median(ts)
            out["timing"].append({
                "path": path, "state": state, "step_s": med, "times_s": ts,
                "tokens_per_s": setup.batch * setup.seq_len / med,
            })
            print(f"  {path:8s} N={state:3d}: {med:.3f} s/step", flush=True)
    # 2. ranking check
    path = args.paths[0]
    for seed in args.seeds:
        model = build_model(setup, corpus.vocab_size, setup.state, path, seed)
        t0 = time.perf_counter()
        rec = train(model, corpus, setup, args.steps, seed, desc=f"seed {seed}")
        train_s = time.perf_counter() - t0
        full = valid_bpc(model, corpus, setup)
        out["full"].append({"seed": seed, "valid_bpc": full, "train_s": train_s,
                            "final_train_loss": rec[-1]["loss"]})
        print(f"seed {seed}: full N={setup.state} valid {full:.4f} bpc "
              f"({args.steps} steps, {train_s:.0f} s)", flush=True)
        gen = torch.Generator().manual_seed(2000 + seed)
        calib = sample_windows(corpus.train, setup.calib_batch, setup.calib_seq_len, gen)
        e_hsv = index_energies(model, calib, "hsv")
        e_exact = index_energies(model, calib, "exact")
        for ranking in RANKINGS:
            keeps = rank_keeps(model, calib, r, ranking, seed)
            cut = copy.deepcopy(model)
            cut_mamba_(cut, keeps)
            bpc = valid_bpc(cut, corpus, setup)
            row = {
                "seed": seed, "ranking": ranking, "valid_bpc": bpc, "increase": bpc - full,
                "dropped_hsv": dropped_fraction(e_hsv, keeps),
                "dropped_exact": dropped_fraction(e_exact, keeps),
                "keep": [k.tolist() for k in keeps],
            }
            out["cuts"].append(row)
            print(f"  {ranking:10s} valid {bpc:.4f} bpc (+{bpc - full:.4f})", flush=True)
        if args.sweep:
            e_h2 = index_energies(model, calib, "h2")
            for ranking in args.sweep_rankings:
                for size in args.sweep:
                    keeps = rank_keeps(model, calib, size, ranking, seed)
                    cut = copy.deepcopy(model)
                    cut_mamba_(cut, keeps)
                    bpc = valid_bpc(cut, corpus, setup)
                    out["sweep"].append({
                        "seed": seed, "ranking": ranking, "r": size, "valid_bpc": bpc,
                        "increase": bpc - full,
                        "dropped_hsv": dropped_fraction(e_hsv, keeps),
                        "dropped_h2": dropped_fraction(e_h2, keeps),
                        "dropped_exact": dropped_fraction(e_exact, keeps),
                    })
                    print(f"  sweep {ranking:10s} r={size:3d} valid {bpc:.4f} bpc", flush=True)
    return out


def report(out: dict) -> None:
    rows = [{"path": t["path"], "N": t["state"], "s/step": t["step_s"],
             "tokens/s": round(t["tokens_per_s"])} for t in out["timing"]]
    print("\nStep time (median)\n")
    print(table(rows, ["path", "N", "s/step", "tokens/s"]))
    seeds = [f"seed {f['seed']}" for f in out["full"]]
    cols = ["ranking", *seeds, "mean increase", "dropped HSV", "dropped exact"]
    rows = [{"ranking": f"full (N={out['setup']['state']})",
             **{f"seed {f['seed']}": f"{f['valid_bpc']:.4f}" for f in out["full"]}}]
    for ranking in RANKINGS:
        cuts = [c for c in out["cuts"] if c["ranking"] == ranking]
        if not cuts:
            continue
        row = {"ranking": f"{ranking} (r={out['r']})"}
        for c in cuts:
            row[f"seed {c['seed']}"] = f"{c['valid_bpc']:.4f}"
        row["mean increase"] = f"{statistics.mean(c['increase'] for c in cuts):+.4f}"
        row["dropped HSV"] = f"{statistics.mean(c['dropped_hsv'] for c in cuts):.3f}"
        row["dropped exact"] = f"{statistics.mean(c['dropped_exact'] for c in cuts):.3f}"
        rows.append(row)
    print("\nValidation bits per character right after the cut (no fine-tuning)\n")
    print(table(rows, cols))
    if out["sweep"]:
        rows = [{"seed": c["seed"], "ranking": c["ranking"], "r": c["r"],
                 "valid bpc": f"{c['valid_bpc']:.4f}", "increase": f"{c['increase']:+.4f}",
                 "dropped HSV": f"{c['dropped_hsv']:.3f}", "dropped H2": f"{c['dropped_h2']:.3f}",
                 "dropped exact": f"{c['dropped_exact']:.3f}"} for c in out["sweep"]]
        print("\nCuts of increasing size: loss increase against the dropped energy shares\n")
        print(table(rows, ["seed", "ranking", "r", "valid bpc", "increase", "dropped HSV",
                           "dropped H2", "dropped exact"]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="step times and the ranking check")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--paths", nargs="+", choices=PATHS, default=["mambapy", "fallback"],
                   help="CPU scan paths to time; the first one also trains")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--timing-steps", type=int, default=3)
    p.add_argument("--keep-frac", type=float, default=0.1)
    p.add_argument("--state", type=int, default=Setup.state)
    p.add_argument("--hidden", type=int, default=Setup.hidden)
    p.add_argument("--layers", type=int, default=Setup.layers)
    p.add_argument("--batch", type=int, default=Setup.batch)
    p.add_argument("--seq-len", type=int, default=Setup.seq_len)
    p.add_argument("--lr", type=float, default=Setup.lr)
    p.add_argument("--eval-windows", type=int, default=None)
    p.add_argument("--sweep", type=int, nargs="*", default=[],
                   help="also cut to each of these sizes (ranking check over cut sizes)")
    p.add_argument("--sweep-rankings", nargs="+", choices=RANKINGS, default=["h2"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if not args.quick:
        p.error("only --quick exists so far (the full comparison needs Compressor support)")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    setup = Setup(hidden=args.hidden, layers=args.layers, state=args.state, batch=args.batch,
                  seq_len=args.seq_len, lr=args.lr, eval_windows=args.eval_windows)
    import transformers

    env = {"threads": torch.get_num_threads(), "torch": torch.__version__,
           "transformers": transformers.__version__, "python": platform.python_version(),
           "loadavg_start": os.getloadavg()}
    t0 = time.perf_counter()
    out = quick(args, setup)
    env["loadavg_end"] = os.getloadavg()
    out["env"] = env
    out["args"] = vars(args)
    out["total_s"] = time.perf_counter() - t0
    report(out)
    print(f"\n{env['threads']} torch thread(s); load average {env['loadavg_start']} at start, "
          f"{env['loadavg_end']} at end; {out['total_s']:.0f} s in all")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
