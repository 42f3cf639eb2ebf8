"""Distributed helpers: rank and world size from the torchrun environment, process-group set-up, reductions.

Nothing here reads the environment at import time; call the functions when needed.
"""
from __future__ import annotations

import contextlib
import logging
import os

import torch
import torch.distributed as torch_dist
import torch.nn as nn

LOGGER = logging.getLogger(__name__)


def get_rank() -> int:
    """Global rank, -1 when not launched by torchrun (upstream's convention)."""
    return int(os.environ.get("RANK", -1))


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", -1))


def get_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_initialized() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def is_main_process() -> bool:
    return get_rank() in (-1, 0)


def init_distributed(device: torch.device) -> None:
    """Initialise the default process group: NCCL on CUDA, gloo on CPU. No-op outside torchrun or if done."""
    if get_rank() == -1 or is_initialized():
        return
    backend = "nccl" if device.type == "cuda" and torch_dist.is_nccl_available() else "gloo"
    torch_dist.init_process_group(backend=backend)


def destroy() -> None:
    if is_initialized():
        torch_dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        torch_dist.barrier()


@contextlib.contextmanager
def main_process_first(local_rank: int | None = None):
    """Let rank 0 do something (e.g. build a label cache) before the others read the result."""
    rank = get_local_rank() if local_rank is None else local_rank
    if rank > 0:
        barrier()
    yield
    if rank == 0:
        barrier()


def reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """All-reduce average of a tensor over the process group; identity when not distributed."""
    if not is_initialized():
        return t
    t = t.clone()
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t / torch_dist.get_world_size()


def reduce_dict(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average every value of a dict of same-device scalar tensors over the process group."""
    if not is_initialized() or not terms:
        return terms
    keys = sorted(terms)
    stacked = reduce_mean(torch.stack([terms[k].float().reshape(()) for k in keys]))
    return dict(zip(keys, stacked.unbind(0)))


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from ``src`` to every rank (identity when not distributed)."""
    if not is_initialized():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def is_parallel(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DataParallel, nn.parallel.DistributedDataParallel))


def de_parallel(model: nn.Module) -> nn.Module:
    """The wrapped module of a DP/DDP model, else the model itself."""
    return model.module if is_parallel(model) else model


def reduce_min(t: torch.Tensor) -> torch.Tensor:
    """All-reduce minimum (e.g. of a 'loss is finite' flag) over the process group."""
    if not is_initialized():
        return t
    t = t.clone()
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
    return t


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's copy of ``module`` (as DDP does at wrap)."""
    if not is_initialized():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            torch_dist.broadcast(t.data, src=src)


def average_gradients(params) -> None:
    """Average ``.grad`` of parameters outside DDP (e.g. a training step's own modules) over all ranks.

    A parameter that got no gradient on any rank this step (KD before its start iteration; the adapters when
    CILF uses outputs only) keeps ``grad = None`` on every rank, so the optimizer skips it (no weight decay, no
    momentum), as in a single-process run. One that got a gradient on some ranks only is averaged with zeros
    from the others, so every rank takes the same step.
    """
    if not is_initialized():
        return
    params = list(params)
    if not params:
        return
    device = params[0].device
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    torch_dist.all_reduce(has_grad, op=torch_dist.ReduceOp.MAX)  # one collective: every rank agrees
    world = torch_dist.get_world_size()
    for p, any_rank in zip(params, has_grad.tolist()):
        if not any_rank:
            continue  # same decision on every rank, so the collectives below stay matched
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch_dist.all_reduce(p.grad, op=torch_dist.ReduceOp.SUM)
        p.grad.div_(world)


def wrap_model(model: nn.Module, modules: nn.Module | None, device: torch.device, sync_bn: bool) -> nn.Module:
    """DDP for the model (SyncBatchNorm on CUDA if asked); extra trainable ``modules`` outside it (a training
    step's) are broadcast once from rank 0, and their gradients must be averaged by the caller."""
    if not is_initialized():
        return model
    if sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        LOGGER.info("Using SyncBatchNorm()")
    if modules is not None:
        broadcast_module(modules)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)
