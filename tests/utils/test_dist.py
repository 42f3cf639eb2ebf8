"""utils.dist on a real 2-rank gloo group (forked processes, a few seconds)."""
from __future__ import annotations

import multiprocessing as mp
import socket

import torch
import torch.distributed as torch_dist

from utils import dist


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.full((3,), float(i + 1))) for i in range(3)]


def _sgd(params) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.5)


def _worker(rank: int, port: int, out) -> None:
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        used, unused, one_rank = params = _params()
        used.grad = torch.full((3,), 1.0 + rank)  # mean 1.5
        if rank == 0:
            one_rank.grad = torch.full((3,), 4.0)  # rank 1 got none: mean 2.0
        dist.average_gradients(params)
        grads = [None if p.grad is None else p.grad.tolist() for p in params]
        optimizer = _sgd(params)
        optimizer.step()
        out.put((rank, grads, [p.detach().tolist() for p in params], [p in optimizer.state for p in params]))
    finally:
        torch_dist.destroy_process_group()


def test_average_gradients_leaves_params_without_any_gradient_alone():
    """Issue 23.4: a step module with no gradient on any rank is skipped by the optimizer (no decay, no momentum),
    exactly as in a single-process run; the old code gave it zeros, so weight decay moved it."""
    port, context = _free_port(), mp.get_context("fork")
    out = context.Queue()
    workers = [context.Process(target=_worker, args=(rank, port, out)) for rank in range(2)]
    for worker in workers:
        worker.start()
    try:
        got = dict((r[0], r[1:]) for r in (out.get(timeout=60) for _ in workers))
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    single = _params()
    single[0].grad, single[2].grad = torch.full((3,), 1.5), torch.full((3,), 2.0)  # what the ranks average to
    reference = _sgd(single)
    reference.step()
    for rank in (0, 1):
        grads, values, has_state = got[rank]
        assert grads == [[1.5] * 3, None, [2.0] * 3]
        assert has_state == [True, False, True]
        assert values == [p.detach().tolist() for p in single]  # same as one process with the mean gradients
        assert values[1] == [2.0] * 3  # untouched by weight decay
