"""The ``ctrlreduce-train`` demo: a ``--quick`` smoke run in a subprocess, JSON schema."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
from ctrlreduce_torch.demo.data import digits, tones
from ctrlreduce_torch.demo.train import rank_stability


def test_quick_run_writes_the_documented_json(tmp_path):
    out = tmp_path / "res.json"
    plots = tmp_path / "plots"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "ctrlreduce_torch.demo.train", "--quick", "--seeds", "2",
         "--threads", "1", "--no-progress", "--json", str(out), "--plots", str(plots)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "speed-up" in proc.stdout and "compressm" in proc.stdout
    res = json.loads(out.read_text())
    assert [r["task"] for r in res] == ["tones", "digits"]
    for obj in res:
        assert obj["seeds"] == [0, 1]
        runs = {r["name"]: r for r in obj["runs"]}
        assert list(runs) == ["full", "compressm", "scratch"]
        for r in runs.values():
            assert 0.0 <= r["accuracy"] <= 1.0 and r["accuracy_std"] >= 0.0
            assert r["train_seconds"] > 0 and r["speedup"] > 0
            assert all(isinstance(d, int) and d >= 1 for d in r["state_dims"])
            assert [p["seed"] for p in r["per_seed"]] == [0, 1]
            assert math.isclose(
                r["accuracy"], float(np.mean([p["accuracy"] for p in r["per_seed"]]))
            )
        n_layers = obj["config"]["n_layers"]
        assert runs["full"]["state_dims"] == [obj["config"]["d_state"]] * n_layers
        # scratch is built at each seed's compressed sizes
        for c, s in zip(runs["compressm"]["per_seed"], runs["scratch"]["per_seed"], strict=True):
            assert c["state_dims"] == s["state_dims"]
        stab = obj["hsv_rank_stability"]
        assert stab is None or -1.0 <= stab <= 1.0
        assert 0.0 <= obj["reduce_fraction"] < 1.0
        assert (plots / f"hsv_{obj['task']}.png").stat().st_size > 0
        assert (plots / f"accuracy_{obj['task']}.png").stat().st_size > 0


def test_tasks_are_deterministic_and_shaped():
    a, b = tones(n_train=64, n_test=32, length=40), tones(n_train=64, n_test=32, length=40)
    assert a.x_train.shape == (64, 40, 1) and a.x_test.shape == (32, 40, 1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert int(a.y_train.max()) < a.n_classes
    d = digits()
    assert d.x_train.shape == (1297, 64, 1) and d.x_test.shape == (500, 64, 1)
    assert float(d.x_train.max()) <= 1.0 and d.n_classes == 10


def test_rank_stability_is_spearman():
    rng = np.random.default_rng(0)
    a = rng.random((1, 10))
    assert math.isclose(rank_stability([a], [2 * a + 1]), 1.0)
    assert math.isclose(rank_stability([a], [-a]), -1.0)
