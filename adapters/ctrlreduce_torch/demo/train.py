"""``ctrlreduce-train``: the CompreSSM demo on tasks that need no download.

For each task and seed it trains three sequence classifiers for the same
number of steps and compares them:

``full``       the model at full state size throughout;
``compressm``  the same model, reduced in place by
               :class:`~ctrlreduce_torch.Compressor` (``tau`` mode) inside
               the first ``window`` of training;
``scratch``    a model built directly at the per-layer sizes the
               ``compressm`` run of the same seed ended with, trained from
               scratch.

Run ``ctrlreduce-train --help`` for the options; ``--quick`` is a CI-sized
smoke run.

JSON output (``--json PATH``): a list with one object per task::

    {"task": str,
     "config": {...},                        # the settings used
     "seeds": [int, ...],
     "runs": [{"name": "full" | "compressm" | "scratch",
               "accuracy": float,            # mean test accuracy over seeds, in [0, 1]
               "accuracy_std": float,        # sample std over seeds (0 for one seed)
               "state_dims": [int, ...],     # final d_state per layer, first seed
               "train_seconds": float,       # mean wall-clock training time
               "train_seconds_std": float,
               "cpu_seconds": float,         # mean process CPU time while training
               "speedup": float,             # full train_seconds / this run's
               "per_seed": [{"seed", "accuracy", "state_dims", "train_seconds",
                             "cpu_seconds"}, ...]}, ...],
     "hsv_rank_stability": float,            # mean over seeds (see below)
     "hsv_rank_stability_per_seed": [float, ...],
     "reduce_fraction": float}               # compressm: reduce time / train time

``train_seconds`` excludes evaluation and HSV recording.
``hsv_rank_stability``: in the ``full`` run, each complex mode's dominance
``|b_i| |c_i| / (1 - |lambda_i|^2)`` (its own HSV, see
:func:`ctrlreduce_torch.modal_scores`; modes keep their identity
in the diagonal parametrization) is recorded at the first cut step and at the
end; the Spearman rank correlation of the two, averaged over layers (and, for
S4D, channels), says how early the ranking of states is settled.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from ctrlreduce._files import atomic_write

from .._layer import layer_class, registered_families
from .._policy import cut_steps
from ..compressor import Compressor, find_ssm_layers
from ..hsv import hankel_singular_values
from ..modal import modal_scores
from .data import Task, make_task
from .models import SequenceClassifier

__all__ = ["Config", "main", "run_task"]


@dataclass(frozen=True)
class Config:
    """Settings of one task's comparison."""

    task: str
    layer: str = "lru"
    d_model: int = 32
    d_state: int = 64
    n_layers: int = 2
    steps: int = 600
    batch_size: int = 50
    lr: float = 4e-3
    weight_decay: float = 0.01
    tau: float = 0.05
    window: float = 0.1
    attempts: int = 4
    eval_every: int = 50
    task_kwargs: dict[str, Any] = field(default_factory=dict)


#: Default ``--threads``.  Measured per step at the demo's sizes on 2 cores
#: (``benchmarks/bench_threads.py``, docs/benchmarks.md): idle, 2 threads were
#: 1.5x faster than 1; with one other busy process, 1 thread was unchanged while
#: 2 threads became 2.1x slower (median, 90th percentile 7x): a thread pool waits
#: for its slowest thread.  One thread degrades gracefully.
DEFAULT_THREADS = 1

#: Defaults per task (chosen as documented in docs/compressm.md).
DEFAULTS: dict[str, Config] = {
    "tones": Config("tones", d_model=24, d_state=64, steps=500, tau=0.02, window=0.2),
    "digits": Config("digits", d_model=24, d_state=64, steps=500, tau=0.02, window=0.2),
}

#: ``--quick``: a smoke run of a few seconds per task.
QUICK = {
    "d_model": 8,
    "d_state": 12,
    "steps": 40,
    "batch_size": 32,
    "eval_every": 20,
    "window": 0.5,
    "attempts": 2,
    "tau": 0.2,
}
QUICK_TASK = {
    "tones": {"n_train": 256, "n_test": 128, "length": 48},
    "digits": {"n_test": 200},
}


# --------------------------------------------------------------------------- training


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += int((model(x[i : i + 500]).argmax(-1) == y[i : i + 500]).sum())
    model.train()
    return correct / len(x)


def _lr_lambda(total: int) -> Any:
    warm = max(1, total // 20)

    def f(step: int) -> float:  # linear warm-up, cosine decay to 0
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return f


def _modal_snapshot(model: torch.nn.Module) -> list[np.ndarray]:
    return [modal_scores(m).cpu().numpy() for _, m in find_ssm_layers(model)]


def _hsv_snapshot(model: torch.nn.Module) -> list[list[float]]:
    out = []
    for _, m in find_ssm_layers(model):
        with torch.no_grad():  # the HSVs the compressor ranks by (those of its plans)
            s = hankel_singular_values(m, augmented=False, form="recurrence").cpu().numpy()
        out.append(s.mean(axis=0).tolist())  # S4D: mean over channels
    return out


def train_run(
    cfg: Config,
    task: Task,
    seed: int,
    name: str,
    *,
    state_dims: list[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one model; returns accuracy, sizes, timings, curves and HSV traces."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    dims = state_dims if state_dims is not None else [cfg.d_state] * cfg.n_layers
    model = SequenceClassifier(
        task.d_input, task.n_classes, d_model=cfg.d_model, d_state=dims, layer=cfg.layer
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.steps))
    comp = None
    if name == "compressm":
        comp = Compressor(
            model,
            opt,
            total_steps=cfg.steps,
            tau=cfg.tau,
            window=cfg.window,
            attempts=cfg.attempts,
        )
    trace_steps = set(cut_steps(cfg.steps, cfg.window, cfg.attempts))
    first_cut = min(trace_steps)
    gen = torch.Generator().manual_seed(seed)
    n = len(task.x_train)
    perm, pos = torch.randperm(n, generator=gen), 0
    wall = cpu = 0.0
    curve: list[tuple[float, float]] = []
    hsv_trace: list[dict[str, Any]] = []
    modal_first: list[np.ndarray] | None = None
    desc = f"{task.name} {name} s{seed}"
    bar = tqdm(range(cfg.steps), desc=desc, leave=False, disable=not progress)
    for step in bar:
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        t0, c0 = time.perf_counter(), time.process_time()
        loss = torch.nn.functional.cross_entropy(model(task.x_train[idx]), task.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        done = step + 1
        if done in trace_steps or done == cfg.steps:  # before this step's cut
            hsv_trace.append({"step": done, "hsv": _hsv_snapshot(model), "dims": model.state_dims})
            if name == "full" and done == first_cut:
                modal_first = _modal_snapshot(model)
        if comp is not None:
            t0, c0 = time.perf_counter(), time.process_time()
            comp.step()
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        if done % cfg.eval_every == 0 or done == cfg.steps:
            acc = _accuracy(model, task.x_test, task.y_test)
            curve.append((wall, acc))
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}")
    bar.close()
    out: dict[str, Any] = {
        "name": name,
        "seed": seed,
        "accuracy": curve[-1][1],
        "state_dims": model.state_dims,
        "train_seconds": wall,
        "cpu_seconds": cpu,
        "curve": curve,
        "hsv_trace": hsv_trace,
    }
    if comp is not None:
        out["history"] = comp.history
        out["reduce_fraction"] = comp.reduce_seconds / max(wall, 1e-12)
    if modal_first is not None:
        out["rank_stability"] = rank_stability(modal_first, _modal_snapshot(model))
    return out


def rank_stability(first: list[np.ndarray], last: list[np.ndarray]) -> float:
    """Mean Spearman correlation of per-mode dominance, per layer and channel."""
    vals = []
    for a, b in zip(first, last, strict=True):  # (G, M) each
        per = [spearmanr(a[g], b[g]).statistic for g in range(a.shape[0]) if a.shape[1] > 1]
        per = [p for p in per if np.isfinite(p)]
        if per:
            vals.append(float(np.mean(per)))
    return float(np.mean(vals)) if vals else float("nan")


# --------------------------------------------------------------------------- comparison


def _summary(runs: list[dict[str, Any]], full_seconds: float) -> dict[str, Any]:
    acc = np.array([r["accuracy"] for r in runs])
    sec = np.array([r["train_seconds"] for r in runs])
    std = (lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0)  # noqa: E731
    return {
        "name": runs[0]["name"],
        "accuracy": float(acc.mean()),
        "accuracy_std": std(acc),
        "state_dims": runs[0]["state_dims"],
        "train_seconds": float(sec.mean()),
        "train_seconds_std": std(sec),
        "cpu_seconds": float(np.mean([r["cpu_seconds"] for r in runs])),
        "speedup": full_seconds / float(sec.mean()),
        "per_seed": [
            {k: r[k] for k in ("seed", "accuracy", "state_dims", "train_seconds", "cpu_seconds")}
            for r in runs
        ],
    }


def run_task(
    cfg: Config, seeds: list[int], *, progress: bool = True, quick: bool = False
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Run the three-way comparison; returns the JSON object and the raw runs."""
    kwargs = dict(QUICK_TASK.get(cfg.task, {}) if quick else {})
    kwargs.update(cfg.task_kwargs)
    task = make_task(cfg.task, **kwargs)
    raw: dict[str, list[dict[str, Any]]] = {"full": [], "compressm": [], "scratch": []}
    for s in seeds:
        raw["full"].append(train_run(cfg, task, s, "full", progress=progress))
        c = train_run(cfg, task, s, "compressm", progress=progress)
        raw["compressm"].append(c)
        raw["scratch"].append(
            train_run(cfg, task, s, "scratch", state_dims=c["state_dims"], progress=progress)
        )
    full_sec = float(np.mean([r["train_seconds"] for r in raw["full"]]))
    stab = [r.get("rank_stability", float("nan")) for r in raw["full"]]
    obj = {
        "task": cfg.task,
        "config": {k: v for k, v in cfg.__dict__.items()},
        "seeds": list(seeds),
        "runs": [_summary(raw[k], full_sec) for k in ("full", "compressm", "scratch")],
        "hsv_rank_stability": float(np.nanmean(stab)) if np.isfinite(stab).any() else None,
        "hsv_rank_stability_per_seed": [x if np.isfinite(x) else None for x in stab],
        "reduce_fraction": float(np.mean([r["reduce_fraction"] for r in raw["compressm"]])),
    }
    return obj, raw


def format_table(results: list[dict[str, Any]]) -> str:
    """The comparison as a fixed-width text table."""
    head = (
        f"{'task':<8} {'run':<10} {'accuracy':>15} {'state dims':<16} "
        f"{'train s':>9} {'speed-up':>8}"
    )
    lines = [head, "-" * len(head)]
    for obj in results:
        for r in obj["runs"]:
            acc = f"{100 * r['accuracy']:.2f}"
            if len(obj["seeds"]) > 1:
                acc += f" ± {100 * r['accuracy_std']:.2f}"
            dims = ",".join(str(d) for d in r["state_dims"])
            lines.append(
                f"{obj['task']:<8} {r['name']:<10} {acc:>15} {dims:<16} "
                f"{r['train_seconds']:>9.1f} {r['speedup']:>7.2f}x"
            )
        stab = obj["hsv_rank_stability"]
        lines.append(
            f"{obj['task']:<8} HSV rank stability {stab if stab is None else round(stab, 3)}; "
            f"reduction overhead {100 * obj['reduce_fraction']:.2f}% of training time"
        )
    return "\n".join(lines)


def plot(obj: dict[str, Any], raw: dict[str, list[dict[str, Any]]], outdir: Path) -> list[Path]:
    """HSV spectra over training with the cuts, and accuracy against wall-clock time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    task = obj["task"]
    comp = raw["compressm"][0]
    n_layers = len(comp["state_dims"])
    fig, axes = plt.subplots(1, n_layers, figsize=(4.5 * n_layers, 3.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    trace = comp["hsv_trace"]
    for li in range(n_layers):
        ax = axes[0, li]
        for j, snap in enumerate(trace):
            s = np.asarray(snap["hsv"][li])
            ax.semilogy(np.arange(1, len(s) + 1), s / s[0], ".-", ms=3, lw=0.8,
                        color=cmap(j / max(1, len(trace) - 1)), label=f"step {snap['step']}")
        # ranked (complex) HSVs per unit of d_state: one per mode
        k = 1 / registered_families()[layer_class(obj["config"]["layer"])].states_per_mode
        for h in comp["history"]:
            if h["applied"] and h["layer"].startswith(f"blocks.{li}."):
                ax.axvline(k * h["new_order"] + 0.5, color="tab:red", lw=0.8, ls="--")
        ax.set_title(f"{task}: layer {li} HSVs before each cut (red: kept)", fontsize=9)
        ax.set_xlabel("index")
        if li == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    p1 = outdir / f"hsv_{task}.png"
    atomic_write(p1, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, color in (("full", "tab:blue"), ("compressm", "tab:red"), ("scratch", "tab:green")):
        for i, r in enumerate(raw[name]):
            t, a = zip(*r["curve"], strict=True)
            ax.plot(t, a, color=color, alpha=0.8, label=name if i == 0 else None)
    ax.set_xlabel("training wall-clock seconds")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{task}: accuracy against time")
    ax.legend()
    fig.tight_layout()
    p2 = outdir / f"accuracy_{task}.png"
    atomic_write(p2, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return [p1, p2]


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ctrlreduce-train",
        description="CompreSSM demo: full size vs in-training compression vs small from scratch.",
    )
    p.add_argument("--tasks", default="tones,digits", help="comma-separated: tones, digits")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ..., N-1)")
    p.add_argument("--quick", action="store_true", help="CI-sized smoke run")
    p.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    p.add_argument("--plots", type=Path, default=None, help="write PNG plots into this folder")
    p.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"torch.set_num_threads (default {DEFAULT_THREADS}: unaffected by other busy "
        "processes; on idle cores 2 threads are about 1.5x faster per step, see "
        "docs/benchmarks.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")
    for name, typ in (
        ("layer", str),
        ("d_model", int),
        ("d_state", int),
        ("n_layers", int),
        ("steps", int),
        ("batch_size", int),
        ("lr", float),
        ("tau", float),
        ("window", float),
        ("attempts", int),
        ("eval_every", int),
    ):
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None,
                       help=f"override the task default of {name}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ctrlreduce-train``."""
    args = _parser().parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    # Powers lam^k of small eigenvalues underflow into subnormal floats in the
    # chunked scan, which slows x86 CPUs by orders of magnitude; flush them.
    torch.set_flush_denormal(True)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in DEFAULTS:
            raise SystemExit(f"--tasks: unknown task {t!r}; choose from {sorted(DEFAULTS)}")
    overrides = {
        k: getattr(args, k)
        for k in ("layer", "d_model", "d_state", "n_layers", "steps", "batch_size", "lr",
                  "tau", "window", "attempts", "eval_every")
        if getattr(args, k) is not None
    }
    results, t0 = [], time.perf_counter()
    for t in tasks:
        cfg = DEFAULTS[t]
        if args.quick:
            cfg = replace(cfg, **QUICK)
        cfg = replace(cfg, **overrides)
        obj, raw = run_task(
            cfg, list(range(args.seeds)), progress=not args.no_progress, quick=args.quick
        )
        results.append(obj)
        if args.plots is not None:
            plot(obj, raw, args.plots)
    print(format_table(results))
    print(f"total {time.perf_counter() - t0:.1f} s with {args.threads} threads")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=2, allow_nan=False)
        atomic_write(args.json, lambda tmp: tmp.write_text(text))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
