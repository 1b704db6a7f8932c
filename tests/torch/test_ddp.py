"""Two-process DistributedDataParallel training with CompreSSM (gloo, CPU)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ctrlreduce_torch.compressor import Compressor
from ctrlreduce_torch.demo.models import SequenceClassifier
from ctrlreduce_torch.distributed import rewrap

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)

STEPS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(rank: int, layer: str, selection: str) -> dict:
    torch.manual_seed(rank)  # different initial weights: DDP must sync them
    net = SequenceClassifier(1, 3, d_model=4, d_state=12, n_layers=2, layer=layer)
    model = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # seed=rank: only rank 0's decision, broadcast, can make the ranks agree
    comp = Compressor(model, opt, total_steps=STEPS, tau=0.2, window=0.5, attempts=2,
                      selection=selection, seed=rank)
    rewraps, losses = 0, []
    for step in range(STEPS):
        g = torch.Generator().manual_seed(100 * step + rank)  # each rank its own shard
        x = torch.randn(8, 20, 1, generator=g)
        y = (x[:, :6, 0].sum(1) > 0).long() + (x[:, -6:, 0].sum(1) > 0).long()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if comp.step():
            model = rewrap(model)
            rewraps += 1
    return {"state": net.state_dict(), "dims": net.state_dims, "rewraps": rewraps,
            "history": comp.history, "losses": losses,
            "opt": [s["exp_avg"] for s in opt.state.values()]}


def _worker(rank: int, world: int, port: int, outdir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = {case: _train(rank, *case) for case in CASES}
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


CASES = [("s4d", "smallest"), ("lru", "random")]


def test_two_ranks_make_identical_cuts(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    out0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    out1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for case in CASES:
        r0, r1 = out0[case], out1[case]
        assert r0["dims"] == r1["dims"], case
        why = (case, [h["reason"] for h in r0["history"]], [h["reason"] for h in r1["history"]])
        assert r0["rewraps"] == r1["rewraps"] >= 1, why
        assert sum(r0["dims"]) < 24, why  # something was cut
        assert [(h["step"], h["new_order"], h["applied"]) for h in r0["history"]] == [
            (h["step"], h["new_order"], h["applied"]) for h in r1["history"]
        ]
        assert r0["state"].keys() == r1["state"].keys()
        for k, v in r0["state"].items():
            if torch.is_tensor(v):
                assert torch.equal(v, r1["state"][k]), (case, k)
        for a, b in zip(r0["opt"], r1["opt"], strict=True):
            assert torch.equal(a, b), case
        assert all(torch.isfinite(torch.tensor(r0["losses"] + r1["losses"]))), case
