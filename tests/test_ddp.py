"""fastgates.LSTM under DistributedDataParallel: two CPU processes (gloo, loopback only), each
on half of a batch, end with the same averaged gradients as one process on the whole batch."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import fastgates

WORLD_SIZE = 2
STEPS, BATCH, INPUT, HIDDEN = 5, 6, 8, 16
TIMEOUT = 120

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = fastgates.LSTM(INPUT, HIDDEN, num_layers=2)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def _build_model():
    torch.manual_seed(0)
    return _Model()


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, BATCH, INPUT, generator=g)
    target = torch.randn(STEPS, BATCH, 1, generator=g)
    return x, target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD_SIZE)
    try:
        model = nn.parallel.DistributedDataParallel(_build_model())
        x, target = _data()
        half = BATCH // WORLD_SIZE
        part = slice(rank * half, (rank + 1) * half)
        loss = nn.functional.mse_loss(model(x[:, part]), target[:, part])
        loss.backward()
        grads = {name: p.grad.detach().clone() for name, p in model.module.named_parameters()}
        path = os.path.join(out_dir, f"grads{rank}.pt")
        torch.save(grads, path + ".tmp")
        os.replace(path + ".tmp", path)  # the parent never sees a half-written file
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown, once the gradients are written: there gloo's
    # threads may still release tensors and abort the process ("terminate called without an
    # active exception", SIGABRT; seen once in CI on a loaded machine, see pytorch/pytorch#179291).
    # A worker that fails before this point still exits with an error.
    os._exit(0)


def test_ddp_gradients_match_single_process():
    port = _free_port()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as out_dir:
        procs = [ctx.Process(target=_worker, args=(rank, port, out_dir), daemon=True)
                 for rank in range(WORLD_SIZE)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join(timeout=TIMEOUT)
        finally:
            stragglers = [p for p in procs if p.is_alive()]
            for p in stragglers:
                p.kill()
                p.join(timeout=10)
        assert not stragglers, f"{len(stragglers)} DDP worker(s) timed out after {TIMEOUT} s"
        assert [p.exitcode for p in procs] == [0] * WORLD_SIZE
        rank_grads = [torch.load(os.path.join(out_dir, f"grads{rank}.pt"), weights_only=True)
                      for rank in range(WORLD_SIZE)]

    model = _build_model()
    x, target = _data()
    nn.functional.mse_loss(model(x), target).backward()
    expected = {name: p.grad for name, p in model.named_parameters()}

    assert len(expected) == 2 * 4 + 2
    for grads in rank_grads:
        assert list(grads) == list(expected)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected[name], rtol=1e-5, atol=1e-6,
                                       msg=lambda m, name=name: f"{name}: {m}")
    # After DDP's all-reduce, both ranks hold exactly the same gradients.
    for name in expected:
        assert torch.equal(rank_grads[0][name], rank_grads[1][name]), name
