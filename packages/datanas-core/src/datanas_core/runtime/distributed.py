"""Data-parallel search under ``torchrun --nproc_per_node=N`` (gloo on CPU, nccl on GPU).

Every rank holds a full copy of the supernet and of the architecture distribution and processes its own
shard of each global batch (see :class:`~datanas_core.runtime.data.DeterministicLoader`). After every
backward pass, before gradient clipping and the optimiser step, the weight gradients and the architecture
gradients are averaged over the ranks (one flat all-reduce per step and level, through the searcher's
``weight_grad_hooks``/``arch_grad_hooks``). All ranks start from rank 0's parameters and draw the same
architecture samples (the sampling generator is seeded identically), so after every step every rank
holds the same weights and the same α, and derives the same genotype. BatchNorm running statistics are
rank-local during an epoch and are synchronised from rank 0 at every epoch end (like DDP's
``broadcast_buffers``). Only rank 0 writes the run directory and checkpoints.

With equal shard sizes and a loss that is a mean over samples, the averaged gradient equals the
gradient of one process on the global batch, so a distributed search matches a single-process search
with the same global batch up to floating-point summation order (exactly so for networks without
BatchNorm). Elastic restarts (``torchrun --max-restarts=K``) re-run the script; ``run_search(...,
resume="auto")`` then continues from the last checkpoint.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from datanas_core.errors import ConfigError
from datanas_core.runtime._jsonutil import is_number

__all__ = ["DistributedContext", "DistributedSync", "attach_distributed", "init_distributed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place mean over ranks."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor

    @staticmethod
    def single() -> DistributedContext:
        return DistributedContext()


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    try:
        return int(v) if v is not None else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r} is not an integer") from None


def _store(rank: int, world: int, timeout: datetime.timedelta) -> Any:
    """The rendezvous store, with keys namespaced by torchrun's restart count.

    After an elastic restart the new workers meet in the same store as the failed ones; without a fresh
    namespace, gloo can read a dead worker's address left by the previous round and hang while
    connecting. Returns ``None`` when ``MASTER_ADDR``/``MASTER_PORT`` are not set (torch's defaults apply).
    """
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        return None
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "") == str(True)
    store = dist.TCPStore(
        addr,
        int(port),
        world_size=world,
        is_master=rank == 0 and not agent_hosts_store,
        timeout=timeout,
        wait_for_workers=False,
    )
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"datanas/restart{restart}", store)


def init_distributed(
    backend: str | None = None, *, timeout_s: float = 1800.0, device: str | torch.device | None = None
) -> DistributedContext:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``, ...).

    Without those variables (or with ``WORLD_SIZE=1``) this returns a single-process context and does
    nothing. If a process group is already initialised, it is reused.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default nccl when CUDA is available and ``device`` is not CPU,
            otherwise gloo.
        timeout_s: collective timeout.
        device: the device to use; default ``cuda:LOCAL_RANK`` with nccl, else CPU.

    Raises:
        ConfigError: an unknown backend, or nccl without CUDA.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        backend = dist.get_backend()
    if world <= 1:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return DistributedContext(device=dev)
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    want_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if backend is None:
        backend = "nccl" if want_cuda else "gloo"
    if backend not in ("gloo", "nccl", "mpi", "ucc"):
        raise ConfigError(f"unknown distributed backend {backend!r}; valid: gloo, nccl, mpi, ucc")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("backend 'nccl' needs CUDA; use 'gloo' on CPU")
    if backend == "nccl" or (device is not None and torch.device(device).type == "cuda"):
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device) if device is not None else torch.device("cpu")
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        store = _store(rank, world, timeout)
        if store is None:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            dist.init_process_group(
                backend=backend, store=store, rank=rank, world_size=world, timeout=timeout
            )
        logger.info("joined process group: rank %d/%d, backend %s, device %s", rank, world, backend, dev)
    return DistributedContext(rank=rank, world_size=world, local_rank=local, backend=backend, device=dev)


def _flat_all_reduce_grads(params: Sequence[nn.Parameter], ctx: DistributedContext) -> None:
    """Average ``p.grad`` over ranks; a parameter without a gradient on every rank keeps ``grad=None``."""
    if not params:
        return
    ref = params[0]
    sizes = [p.numel() for p in params]
    flat = torch.zeros(
        sum(sizes) + len(params),
        dtype=torch.float64 if ref.dtype == torch.float64 else ref.dtype,
        device=ref.device,
    )
    off = 0
    for i, p in enumerate(params):
        if p.grad is not None:
            flat[off : off + sizes[i]].copy_(p.grad.detach().reshape(-1))
            flat[sum(sizes) + i] = 1.0
        off += sizes[i]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    off = 0
    n_total = sum(sizes)
    for i, p in enumerate(params):
        seen = float(flat[n_total + i])
        if seen > 0:
            g = flat[off : off + sizes[i]].view_as(p).to(p.dtype) / ctx.world_size
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        off += sizes[i]


class DistributedSync:
    """Search callback + gradient hooks that keep all ranks identical (see the module docstring).

    Use :func:`attach_distributed` rather than constructing it directly.
    """

    def __init__(self, ctx: DistributedContext, *, average_records: bool = True) -> None:
        self.ctx = ctx
        self.average_records = average_records

    # gradient hooks (called by the searcher before clipping and the optimiser step)
    def sync_grads(self, params: Sequence[nn.Parameter]) -> None:
        if self.ctx.enabled:
            _flat_all_reduce_grads(list(params), self.ctx)

    def _broadcast_module(self, module: nn.Module, *, buffers_only: bool = False) -> None:
        tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
        with torch.no_grad():
            for t in tensors:
                if t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.bool, torch.uint8):
                    dist.broadcast(t.data, src=0)

    def on_search_start(self, searcher: Any) -> None:
        if not self.ctx.enabled:
            return
        self._broadcast_module(searcher.supernet)
        self._broadcast_module(searcher.distribution)

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        if not self.ctx.enabled:
            return
        self._broadcast_module(searcher.supernet, buffers_only=True)
        # guard against silent divergence of the architecture parameters
        with torch.no_grad():
            params = [p.detach().reshape(-1).double() for p in searcher.distribution.parameters()]
            if params:
                mine = torch.cat(params)
                ref = mine.clone()
                dist.broadcast(ref, src=0)
                diff = (mine - ref).abs().max().reshape(1)
                dist.all_reduce(diff, op=dist.ReduceOp.MAX)
                if float(diff) > 0:
                    logger.warning(
                        "architecture parameters differ across ranks (max |diff| %.3g); "
                        "re-synchronising from rank 0",
                        float(diff),
                    )
                    self._broadcast_module(searcher.distribution)
                record["dist_alpha_max_diff"] = float(diff)
        if self.average_records:
            keys = self.ctx.broadcast_object(
                sorted(k for k, v in record.items() if is_number(v) and k != "epoch")
            )
            vals = torch.tensor([float(record.get(k, float("nan"))) for k in keys], dtype=torch.float64)
            if len(keys):
                dist.all_reduce(vals, op=dist.ReduceOp.SUM)
                vals /= self.ctx.world_size
                for k, v in zip(keys, vals.tolist(), strict=True):
                    if k != "dist_alpha_max_diff":
                        record[k] = v
        record["world_size"] = self.ctx.world_size


def attach_distributed(searcher: Any, ctx: DistributedContext, **kwargs: Any) -> DistributedSync:
    """Register gradient averaging on ``searcher`` and return the callback to add to its callbacks.

    Raises:
        ConfigError: the searcher has no ``weight_grad_hooks``/``arch_grad_hooks`` lists.
    """
    sync = DistributedSync(ctx, **kwargs)
    for name in ("weight_grad_hooks", "arch_grad_hooks"):
        hooks = getattr(searcher, name, None)
        if not isinstance(hooks, list):
            raise ConfigError(
                f"searcher {type(searcher).__name__} has no {name!r} list; cannot distribute it"
            )
        if not any(
            getattr(h, "__self__", None) is not None and isinstance(h.__self__, DistributedSync)
            for h in hooks
        ):
            hooks.append(sync.sync_grads)
    return sync


def describe(ctx: DistributedContext) -> Mapping[str, Any]:
    """JSON-able description for manifests."""
    return {"rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend, "device": str(ctx.device)}
