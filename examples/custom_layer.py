"""Bring your own diagonal SSM layer: register its family, and the adapters handle it.

A user's layer, defined here and not in ``ctrlreduce_torch``, is described to the
adapters by a *layer family* (:class:`ctrlreduce_torch.BalancedFamily`): its name,
which parameter axes carry the state index, and the map from its parameters to its
diagonal recurrence and back.  After ``register_family`` it is found
(``find_ssm_layers``), ranked (``hankel_singular_values``), reduced (``reduce_``) and
compressed while training (``Compressor``) like the built-in LRU, S5 and S4D.

The layer (``H`` inputs and outputs, ``N`` complex states)::

    lam = exp(-exp(log_rate) + i freq)                       (N,), |lam| < 1
    x[k] = lam * x[k-1] + (B_re + i B_im) u[k]               B: (N, H)
    y[k] = Re((C_re + i C_im) x[k]) + D * u[k]               C: (H, N), D: (H,)

Run ``python examples/custom_layer.py`` (a few seconds) or with ``--quick`` (CI).
"""

from __future__ import annotations

import argparse
import math

import ctrlreduce_torch as crt
import torch
from torch import nn


class DiagonalSSM(nn.Module):
    """A diagonal SSM layer written without anything from ``ctrlreduce_torch``."""

    def __init__(self, d_model: int, d_state: int) -> None:
        super().__init__()
        H, N = d_model, d_state
        self.log_rate = nn.Parameter(torch.log(torch.empty(N).uniform_(0.02, 0.6)))
        self.freq = nn.Parameter(torch.empty(N).uniform_(0.05, math.pi))
        self.B_re = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))
        self.B_im = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))
        self.C_re = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
        self.C_im = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
        self.D = nn.Parameter(torch.zeros(H))

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (b, L, H) -> (b, L, H)
        L = u.shape[1]
        log_lam = torch.complex(-torch.exp(self.log_rate), self.freq)  # (N,)
        k = torch.arange(L, dtype=u.dtype, device=u.device)
        lag = k[:, None] - k[None, :]  # (L, L): t - j
        powers = torch.exp(log_lam[:, None, None] * lag.clamp(min=0))  # (N, L, L)
        powers = powers * (lag >= 0)  # lam^(t - j) for t >= j
        B = torch.complex(self.B_re, self.B_im)
        Bu = torch.einsum("nh,blh->bnl", B, u.to(B.dtype))
        x = torch.einsum("ntj,bnj->bnt", powers, Bu)  # (b, N, L): x[t] = sum lam^(t-j) B u[j]
        C = torch.complex(self.C_re, self.C_im)
        return torch.einsum("hn,bnt->bth", C, x).real + u * self.D


class DiagonalSSMFamily(crt.BalancedFamily):
    """How the adapters read and write a :class:`DiagonalSSM` (one MIMO system)."""

    name = "diagonal-ssm"
    states_per_mode = 1  # one complex state per mode
    state_axes = {"log_rate": 0, "freq": 0, "B_re": 0, "B_im": 0, "C_re": 1, "C_im": 1}

    def lti(self, layer, params):
        lam = torch.exp(torch.complex(-torch.exp(params["log_rate"]), params["freq"]))
        B = torch.complex(params["B_re"], params["B_im"])
        C = torch.complex(params["C_re"], params["C_im"])
        return crt.DiagonalLTI(lam[None], B[None], C[None], torch.diag_embed(params["D"])[None])

    def params_from_lti(self, layer, lti):
        lam, B, C, D = lti.lam[0], lti.B[0], lti.C[0], lti.D[0]
        d = torch.diagonal(D)
        if float((D - torch.diag_embed(d)).abs().max()) > 1e-12 * float(D.abs().max() + 1):
            raise ValueError("lti.D must be diagonal for a DiagonalSSM")
        return {
            "log_rate": torch.log(-torch.log(lam.abs())),
            "freq": torch.angle(lam),
            "B_re": B.real, "B_im": B.imag, "C_re": C.real, "C_im": C.imag, "D": d,
        }


crt.register_family(DiagonalSSM, DiagonalSSMFamily())


class Net(nn.Module):
    def __init__(self, d_state: int, H: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(1, H)
        self.ssm = DiagonalSSM(H, d_state)
        self.out = nn.Linear(H, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.out(nn.functional.gelu(self.ssm(self.inp(u))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a CI-sized run")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    steps, L = (60, 32) if args.quick else (300, 64)

    # a target: a fixed resonant filter of the input, which a few states can learn
    teacher = DiagonalSSM(1, 3)
    with torch.no_grad():
        teacher.log_rate.fill_(math.log(0.1))
        teacher.freq.copy_(torch.tensor([0.3, 1.1, 2.0]))
        teacher.B_im.zero_()

    net = Net(d_state=24)
    layer = net.ssm
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    # found and ranked like a built-in layer
    assert crt.find_ssm_layers(net) == [("ssm", layer)]
    print("HSVs of the layer's map:", crt.hankel_singular_values(layer)[0, :6].tolist())

    # reduced in place: the a-priori bound holds for the output change (on a copy)
    twin = Net(24)
    twin.load_state_dict(net.state_dict())
    u = torch.randn(4, L, 4, dtype=torch.float64)
    with torch.no_grad():
        y0 = twin.ssm.double()(u)
    rep = crt.reduce_(twin.ssm, order=8)
    assert rep.applied, rep.reason
    with torch.no_grad():
        err = float((twin.ssm(u) - y0).norm(dim=(1, 2)).max() / u.norm(dim=(1, 2)).min())
    print(f"reduce_ to d_state 8: bound {rep.error_bound:.3g}, measured l2 gain {err:.3g}")
    assert err <= rep.error_bound * (1 + 1e-9)

    # trained under the Compressor, cuts applied
    comp = crt.Compressor(net, opt, total_steps=steps, tau=0.05, window=0.5, attempts=2)
    for _ in range(steps):
        x = torch.randn(32, L, 1)
        with torch.no_grad():
            target = teacher(x)
        loss = nn.functional.mse_loss(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        comp.step()
    cuts = [(h["old_order"], h["new_order"]) for h in comp.history if h["applied"]]
    final = float(loss.detach())
    print(f"cuts {cuts}; d_state {comp.state_dims}; final loss {final:.4f}")
    assert cuts and comp.state_dims[0] < 24 and math.isfinite(final)
    print("OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
