"""The Lightning callback, driven by a real ``lightning.Trainer`` on CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="the [lightning] extra is not installed")

from ctrlreduce_torch.demo.models import SequenceClassifier  # noqa: E402
from ctrlreduce_torch.lightning import CompressorCallback  # noqa: E402

torch.set_num_threads(1)


class Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = SequenceClassifier(1, 3, d_model=4, d_state=16, n_layers=2, layer="s4d")
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loader(n: int = 96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 24, 1, generator=g)
    y = (x[:, :8, 0].sum(1) > 0).long() + (x[:, -8:, 0].sum(1) > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def test_callback_cuts_inside_a_real_trainer():
    module = Module()
    cb = CompressorCallback(tau=0.2, window=0.5, attempts=2)
    assert isinstance(cb, CompressorCallback)
    trainer = pl.Trainer(
        max_steps=16,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[cb],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, loader())
    comp = cb.compressor
    assert comp is not None and comp.total_steps == 16 and comp.schedule == [4, 8]
    assert trainer.global_step == 16 and comp.step_count == 16
    assert [h["step"] for h in comp.history] == [4, 4, 8, 8]
    assert module.net.state_dims != [16, 16]
    assert module.net.state_dims == comp.state_dims
    # Lightning's optimizer (and its scheduler) is the object rebound in place
    opt = trainer.optimizers[0]
    assert opt is comp.optimizer
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {
        id(p) for p in module.parameters()
    }
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is opt
    # training went on after the cuts, finite
    assert len(module.losses) == 16
    assert all(torch.isfinite(torch.tensor(module.losses)))
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())
    assert cb.state_dict()["step_count"] == 16
