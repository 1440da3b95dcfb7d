"""A PyTorch rebuild of the `xing2023` network, timed as `benchmark train`'s yardstick.

Only for the benchmark: `lma-tf benchmark train` compares lma_tf's training
throughput with this mirror's, measured in the same run on the same CPU.
It is written from the layer table in docs/fidelity.md (same layers, shapes
and 128,216 trainable parameters as `lma_tf.models.xing2023`), trained the
authors' way: Adam at 1e-4 with weight decay 1e-5, loss MSE (ms^2) + 10 x
NLL over the 126 real sectors, batches of 64 sliced from tensors in memory.

PyTorch is optional (the `bench` extra); without it `train_examples_per_s`
returns the reason it measured nothing instead of failing.
"""

from __future__ import annotations

import os
import time

import numpy as np

NUM_SECTORS = 128  # the padded ring
REAL_SECTORS = 126
NUM_FRAMES = 64
TRUNK = (4, 8, 16, 16)
HEAD = 16
TOS_CONVS, LMA_CONVS = 4, 3
NOT_INSTALLED = "not measured: torch not installed"


def _network(torch):
    """The mirror as a `torch.nn.Module` class (built lazily: torch is optional)."""
    nn = torch.nn
    F = torch.nn.functional

    def block(cin: int, cout: int, pool: bool) -> list:
        """conv 3x3 -> (max-pool 2x2) -> BatchNorm -> ReLU, as the Keras blocks."""
        parts = [nn.Conv2d(cin, cout, 3, padding=1)]
        if pool:
            parts.append(nn.MaxPool2d(2))
        return [*parts, nn.BatchNorm2d(cout), nn.ReLU()]

    def head(convs: int, out_dim: int) -> nn.Sequential:
        """`convs` convolutions (the first pooled), flatten, 2-layer MLP."""
        parts = []
        for i in range(convs):
            parts += block(HEAD, HEAD, pool=i == 0)
        flat = HEAD * (NUM_SECTORS // 32) * (NUM_FRAMES // 32)
        hidden = int(np.linspace(flat, out_dim, 3).astype(int)[1])
        parts += [
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.ReLU(),
            nn.BatchNorm1d(hidden),
            nn.Linear(hidden, out_dim),
        ]
        return nn.Sequential(*parts)

    class Mirror(nn.Module):
        """Shared trunk; TOS regression (ms) and LMA log-probabilities."""

        def __init__(self) -> None:
            super().__init__()
            trunk, cin = [], 1
            for c in TRUNK:
                trunk += block(cin, c, pool=True)
                cin = c
            self.trunk = nn.Sequential(*trunk)
            self.tos = head(TOS_CONVS, NUM_SECTORS)
            self.lma = head(LMA_CONVS, 2 * NUM_SECTORS)
            for m in self.modules():  # Xavier-uniform, as Keras' glorot_uniform
                if isinstance(m, nn.Conv2d | nn.Linear):
                    nn.init.xavier_uniform_(m.weight)

        def forward(self, strain):
            x = self.trunk(strain.unsqueeze(1))  # (B, 1, sectors, frames)
            tos = F.leaky_relu(self.tos(x) - 17.0, 0.01) + 17.0
            logits = self.lma(x).view(-1, 2, NUM_SECTORS).transpose(1, 2)
            return tos, F.log_softmax(logits, dim=-1)

    return Mirror


def trainable_parameters() -> int | str:
    """The mirror's trainable parameter count (128,216), or why there is none."""
    try:
        import torch
    except ImportError:
        return NOT_INSTALLED
    net = _network(torch)()
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def train_examples_per_s(
    batch_size: int = 64,
    steps: int = 60,
    warmup: int = 5,
    seed: int = 0,
    threads: int | None = None,
) -> dict:
    """The mirror's training examples/s on in-memory tensors.

    `threads` defaults to one per core. On a CPU shared with other jobs,
    PyTorch's OpenMP threads can wait on each other far longer than they
    compute, so `benchmark train` also times one thread.

    Returns {"torch_examples_per_s", "torch_version", "torch_threads",
    "torch_trainable_params"}, or {"torch": NOT_INSTALLED} without PyTorch.
    """
    try:
        import torch
    except ImportError:
        return {"torch": NOT_INSTALLED}
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    rng = np.random.default_rng(seed)
    n = batch_size * 8
    strain = torch.from_numpy(
        rng.normal(0.0, 0.05, (n, NUM_SECTORS, NUM_FRAMES)).astype(np.float32)
    )
    tos = torch.from_numpy(rng.uniform(20, 80, (n, NUM_SECTORS)).astype(np.float32))
    lma = torch.from_numpy(rng.integers(0, 2, (n, NUM_SECTORS)))
    mask = torch.zeros(NUM_SECTORS)
    mask[:REAL_SECTORS] = 1.0

    net = _network(torch)()
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-5)

    def step(i: int) -> float:
        lo = (i * batch_size) % n
        x, t, y = (v[lo : lo + batch_size] for v in (strain, tos, lma))
        pred_tos, logp = net(x)
        mse = ((pred_tos - t) ** 2 * mask).sum(-1) / NUM_SECTORS
        nll = (-logp.gather(-1, y.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
        loss = (mse + 10.0 * nll / NUM_SECTORS).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    seconds = time.perf_counter() - start
    return {
        "torch_examples_per_s": steps * batch_size / seconds,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_trainable_params": sum(
            p.numel() for p in net.parameters() if p.requires_grad
        ),
    }
