"""Per-step time of the ``ctrlreduce-train`` demo with 1 and 2 torch threads, quiet and shared.

One training step is exactly the demo's (``ctrlreduce_torch.demo.train``): forward of the
``SequenceClassifier`` at the task's default sizes, cross-entropy, backward, AdamW step,
with ``torch.set_flush_denormal(True)`` as the demo sets it.  Every configuration runs in
a fresh subprocess (clean thread pools), the configurations are interleaved over the
repeats so that drifting background load hits them alike, and the script starts and
stops the busy processes of the "shared" condition itself (``python -c "while True:
pass"``, killed by process id).

    python benchmarks/bench_threads.py                      # tones, threads 1 and 2, 0 and 1 busy
    python benchmarks/bench_threads.py --task digits --busy 0,1,2 --repeat 5

Prints the load average before each condition and a Markdown table: median and 90th
percentile of the per-step wall time over all measured steps, and the slowdown of each
median against the quiet median with the same number of threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _child(task_name: str, threads: int, steps: int, warmup: int) -> None:
    """Time ``steps`` demo training steps after ``warmup``; print the times as JSON."""
    import torch
    from ctrlreduce_torch.demo.data import make_task
    from ctrlreduce_torch.demo.models import SequenceClassifier
    from ctrlreduce_torch.demo.train import DEFAULTS

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    cfg = DEFAULTS[task_name]
    task = make_task(cfg.task)
    torch.manual_seed(0)
    model = SequenceClassifier(
        task.d_input, task.n_classes, d_model=cfg.d_model, d_state=cfg.d_state,
        n_layers=cfg.n_layers, layer=cfg.layer,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(warmup + steps):
        idx = torch.randint(0, len(task.x_train), (cfg.batch_size,), generator=gen)
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(task.x_train[idx]), task.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times}))


def _run_child(args: argparse.Namespace, threads: int) -> list[float]:
    cmd = [sys.executable, __file__, "--child", "--task", args.task, "--threads-child",
           str(threads), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])["times"]


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:  # only the processes this script started, by their id
        p.kill()
        p.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="tones", help="demo task whose default sizes to use")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--busy", default="0,1", help="comma-separated numbers of busy processes")
    p.add_argument("--steps", type=int, default=30, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads-child", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.task, args.threads_child, args.steps, args.warmup)
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    busy_counts = [int(b) for b in args.busy.split(",")]
    print(f"cores: {os.cpu_count()}, task {args.task}, {args.steps} timed steps x "
          f"{args.repeat} runs per configuration")
    results: dict[tuple[int, int], list[float]] = {}
    for b in busy_counts:
        print(f"load average before {b} busy: {os.getloadavg()}", flush=True)
        procs = _busy(b)
        try:
            time.sleep(0.5 if b else 0.0)
            for _ in range(args.repeat):
                for t in threads:
                    results.setdefault((b, t), []).extend(_run_child(args, t))
        finally:
            _stop(procs)
    rows = ["| busy processes | threads | median ms/step | p90 ms/step | vs quiet, same threads |",
            "|---|---|---|---|---|"]
    for (b, t), times in sorted(results.items()):
        med = 1e3 * statistics.median(times)
        p90 = 1e3 * statistics.quantiles(times, n=10)[-1]
        quiet = results.get((0, t))
        ratio = med / (1e3 * statistics.median(quiet)) if quiet else float("nan")
        rows.append(f"| {b} | {t} | {med:.1f} | {p90:.1f} | {ratio:.2f}x |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
